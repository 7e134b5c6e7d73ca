#include "aquifer/drivers/gcp/grpc_client.h"

#include <cstdlib>

#include <gtest/gtest.h>

#include "google/rpc/status.pb.h"

namespace aquifer::drivers::gcp {
namespace {

TEST(GrpcOptions, AnEmulatorVariableGivesAPlaintextEndpointUnlessOneIsConfigured) {
  ::setenv("AQUIFER_TEST_FAKE_EMULATOR_HOST", "127.0.0.1:18086", 1);
  auto from_env = ParseGrpcOptions({{"project", "p"}}, "bigtable", "bigtable.googleapis.com:443",
                                   "AQUIFER_TEST_FAKE_EMULATOR_HOST");
  ASSERT_TRUE(from_env.ok()) << from_env.status().ToString();
  EXPECT_EQ(from_env->endpoint, "127.0.0.1:18086");
  EXPECT_TRUE(from_env->emulator);

  auto configured = ParseGrpcOptions({{"project", "p"}, {"endpoint", "example.com:443"}}, "bigtable",
                                     "bigtable.googleapis.com:443", "AQUIFER_TEST_FAKE_EMULATOR_HOST");
  ASSERT_TRUE(configured.ok());
  EXPECT_EQ(configured->endpoint, "example.com:443");
  EXPECT_FALSE(configured->emulator);
  ::unsetenv("AQUIFER_TEST_FAKE_EMULATOR_HOST");

  auto real = ParseGrpcOptions({{"project", "p"}}, "bigtable", "bigtable.googleapis.com:443",
                               "AQUIFER_TEST_FAKE_EMULATOR_HOST");
  ASSERT_TRUE(real.ok());
  EXPECT_EQ(real->endpoint, "bigtable.googleapis.com:443");
  EXPECT_FALSE(real->emulator);
}

TEST(GrpcOptions, BadConfigurationIsRefusedWithTheKeyNamed) {
  auto no_project = ParseGrpcOptions({}, "pubsub", "pubsub.googleapis.com:443", nullptr);
  ASSERT_FALSE(no_project.ok());
  EXPECT_EQ(no_project.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_project.status().message().find("project"), std::string::npos);

  auto no_port = ParseGrpcOptions({{"project", "p"}, {"endpoint", "localhost"}}, "pubsub", "x:1", nullptr);
  ASSERT_FALSE(no_port.ok());
  EXPECT_NE(no_port.status().message().find("host:port"), std::string::npos);

  auto bad_timeout = ParseGrpcOptions({{"project", "p"}, {"request_timeout_ms", "0"}}, "pubsub", "x:1", nullptr);
  ASSERT_FALSE(bad_timeout.ok());
  EXPECT_NE(bad_timeout.status().message().find("request_timeout_ms"), std::string::npos);
}

TEST(GrpcContext, TheRealServiceNeedsATokenAndTheEmulatorNone) {
  GrpcOptions real;
  real.endpoint = "bigtable.googleapis.com:443";
  real.project = "p";
  real.token_env = "AQUIFER_TEST_FAKE_TOKEN";
  ::unsetenv("AQUIFER_TEST_FAKE_TOKEN");
  grpc::ClientContext without;
  Status refused = PrepareContext(&without, real);
  EXPECT_EQ(refused.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(refused.message().find("AQUIFER_TEST_FAKE_TOKEN"), std::string::npos);

  ::setenv("AQUIFER_TEST_FAKE_TOKEN", "ya29.token", 1);
  grpc::ClientContext with;
  EXPECT_TRUE(PrepareContext(&with, real).ok());
  ::unsetenv("AQUIFER_TEST_FAKE_TOKEN");

  GrpcOptions emulator = real;
  emulator.emulator = true;
  grpc::ClientContext plain;
  EXPECT_TRUE(PrepareContext(&plain, emulator).ok());
}

TEST(GrpcStatus, MapsToOurCodesKeepingTheMessage) {
  Status unavailable = FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connect failed"), "pubsub Pull");
  EXPECT_EQ(unavailable.code(), StatusCode::kUnavailable);
  EXPECT_NE(unavailable.message().find("pubsub Pull: connect failed"), std::string::npos);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, ""), "x").code(), StatusCode::kTimeout);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::NOT_FOUND, ""), "x").code(), StatusCode::kNotFound);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::OUT_OF_RANGE, ""), "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::DATA_LOSS, ""), "x").code(), StatusCode::kInternal);
  EXPECT_TRUE(FromGrpc(grpc::Status::OK, "x").ok());
  EXPECT_TRUE(IsRetryable(grpc::StatusCode::UNAVAILABLE));
  EXPECT_FALSE(IsRetryable(grpc::StatusCode::INVALID_ARGUMENT));
}

TEST(GeneratedProtos, GoogleRpcStatusRoundTripsWithItsFieldNumbers) {
  ::google::rpc::Status status;
  status.set_code(14);
  status.set_message("unavailable");
  std::string wire = status.SerializeAsString();
  // field 1 varint 14, field 2 length-delimited "unavailable": googleapis' numbering
  EXPECT_EQ(wire.substr(0, 4), std::string("\x08\x0e\x12\x0b", 4));
  ::google::rpc::Status back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.message(), "unavailable");
}

}  // namespace
}  // namespace aquifer::drivers::gcp
