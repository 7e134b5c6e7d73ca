// Interop with an independent Avro implementation (fastavro, from the venv
// scripts/setup.sh builds): records Aquifer encodes must read back in
// fastavro as the same values, and datums fastavro writes must decode in
// Aquifer to the same values. A missing venv or fastavro fails the test.

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "aquifer/schema/codec.h"
#include "aquifer/schema/testing_schemas.h"

namespace aquifer::schema {
namespace {

namespace fs = std::filesystem;

// Records of the rich schema (testing_schemas.h) covering every type, the
// extremes of each range, nulls everywhere and empty containers.
const std::vector<std::string> kRecords = {
    R"({"id":"order-1","seq":-9223372036854775808,"small":-2147483648,"flag":true,"ratio":0.1,)"
    R"("price":12.5,"blob":"AGFiAP8=","hash":"3q2+7w==","color":"GREEN",)"
    R"("amount":"-12345678901234567890123456789012.3456","famount":"-0.05",)"
    R"("uid":"123e4567-e89b-12d3-a456-426614174000","ts":1700000000123,)"
    R"("items":[{"sku":"a","qty":1,"price":null},{"sku":"b\"\\\n\u0001","qty":2147483647,"price":-0.0}],)"
    R"("tags":["x",null,""],"note":"n","other_hash":"AAAAAA==",)"
    R"("first_item":{"sku":"f","qty":0,"price":1e+300},"n_color":"BLUE","n_amount":"99999999.99",)"
    R"("n_famount":"9999999999999999.99","n_uid":"ffffffff-ffff-ffff-ffff-ffffffffffff","n_ts":-1,)"
    R"("n_long":9223372036854775807,"n_int":-1,"n_bool":false,"n_float":"NaN","n_double":"-Infinity",)"
    R"("n_string":"h\u00e9llo \u4e16\u754c \ud83d\ude00","n_bytes":"","n_items":[],"n_matrix":[[1,2],[],[-3]]})",
    R"({"id":"","seq":0,"small":0,"flag":false,"ratio":-3.4028234663852886e38,"price":5e-324,"blob":"",)"
    R"("hash":"AAECAw==","color":"RED","amount":"0","famount":"0","uid":"00000000-0000-0000-0000-000000000000",)"
    R"("ts":0,"items":[],"first_item":null})",
    R"({"id":"big","seq":9223372036854775807,"small":2147483647,"flag":true,"ratio":"Infinity","price":"NaN",)"
    R"("blob":"/////w==","hash":"/////w==","color":"BLUE","amount":"9999999999999999999999999999999999.9999",)"
    R"("famount":"-9999999999999999.99","uid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","ts":-62135596800000,)"
    R"("items":[{"sku":"x","qty":-2147483648,"price":1.5},{"sku":"y","qty":3,"price":null},{"sku":"z","qty":4,"price":2.25}],)"
    R"("tags":[null,null],"note":null,"other_hash":null,"first_item":null,"n_color":"RED",)"
    R"("n_amount":"-0.01","n_famount":"0.01","n_ts":253402300799999,"n_long":null,"n_int":2147483647,)"
    R"("n_bool":true,"n_float":1.25,"n_double":-1e-300,"n_string":"","n_bytes":"AA==",)"
    R"("n_items":[{"sku":"q","qty":5,"price":-0.5}],"n_matrix":[[-9223372036854775808,9223372036854775807]]})",
};

struct ProcessResult {
  int exit_code = -1;
  std::string output;
};

ProcessResult RunCommand(const std::string& command) {
  ProcessResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

class AvroInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = std::string(AQUIFER_SOURCE_DIR) + "/.venv/bin/python";
    script_ = std::string(AQUIFER_SOURCE_DIR) + "/tests/avro_interop/fastavro_check.py";
    ASSERT_TRUE(fs::exists(python_))
        << "the Python venv is missing (" << python_ << "): run scripts/setup.sh";
    auto probe = RunCommand(python_ + " -c 'import fastavro'");
    ASSERT_EQ(probe.exit_code, 0) << "fastavro is not installed in " << python_
                                  << ": run scripts/setup.sh\n" << probe.output;
    auto schema = Schema::Parse(testing::kRichSchemaJson, {"id"});
    ASSERT_TRUE(schema.ok()) << schema.status().ToString();
    schema_ = *schema;
    dir_ = fs::temp_directory_path() /
           ("aquifer_avro_interop_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    WriteFile(dir_ / "schema.avsc", schema_->avro_json());
  }
  void TearDown() override {
    if (!dir_.empty() && !HasFailure()) fs::remove_all(dir_);
  }

  Value Parse(const std::string& json) {
    auto value = ParseJsonRecord(*schema_, json);
    EXPECT_TRUE(value.ok()) << value.status().ToString() << "\n" << json;
    return value.ok() ? *value : Value{};
  }

  std::string Json(const Value& value) {
    std::string out;
    WriteJson(*schema_, value, &out);
    return out;
  }

  std::string python_, script_;
  SchemaPtr schema_;
  fs::path dir_;
};

TEST_F(AvroInterop, FastavroReadsWhatAquiferEncodes) {
  std::string command = python_ + " " + script_ + " read " + (dir_ / "schema.avsc").string();
  for (size_t idx = 0; idx < kRecords.size(); ++idx) {
    auto avro = JsonToAvro(*schema_, kRecords[idx]);
    ASSERT_TRUE(avro.ok()) << avro.status().ToString();
    fs::path datum = dir_ / ("datum_" + std::to_string(idx) + ".avro");
    WriteFile(datum, *avro);
    command += " " + datum.string();
  }
  auto result = RunCommand(command);
  ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  std::istringstream lines(result.output);
  std::string line;
  size_t idx = 0;
  for (; std::getline(lines, line); ++idx) {
    ASSERT_LT(idx, kRecords.size()) << "extra output: " << line;
    Value expected = Parse(kRecords[idx]);
    Value from_fastavro = Parse(line);
    EXPECT_TRUE(testing::SameValue(expected, from_fastavro))
        << "record " << idx << "\nAquifer:  " << Json(expected) << "\nfastavro: " << line;
  }
  EXPECT_EQ(idx, kRecords.size());
}

TEST_F(AvroInterop, AquiferDecodesWhatFastavroWrites) {
  std::string jsonl;
  // Complete records (defaults and nulls filled in), so the script needs no default logic.
  for (const std::string& record : kRecords) jsonl += Json(Parse(record)) + "\n";
  WriteFile(dir_ / "records.jsonl", jsonl);
  std::string command = python_ + " " + script_ + " write " + (dir_ / "schema.avsc").string() + " " +
                        (dir_ / "records.jsonl").string() + " " + dir_.string();
  auto result = RunCommand(command);
  ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
  for (size_t idx = 0; idx < kRecords.size(); ++idx) {
    fs::path datum = dir_ / ("datum_" + std::to_string(idx) + ".avro");
    ASSERT_TRUE(fs::exists(datum)) << datum;
    std::string bytes = ReadFile(datum);
    auto decoded = DecodeAvro(*schema_, bytes);
    ASSERT_TRUE(decoded.ok()) << "record " << idx << ": " << decoded.status().ToString();
    Value expected = Parse(kRecords[idx]);
    EXPECT_TRUE(testing::SameValue(expected, *decoded))
        << "record " << idx << "\nexpected: " << Json(expected) << "\ndecoded:  " << Json(*decoded);
    // Both implementations produce the same bytes for the same record.
    auto ours = JsonToAvro(*schema_, kRecords[idx]);
    ASSERT_TRUE(ours.ok());
    EXPECT_EQ(*ours, bytes) << "record " << idx << ": encodings differ";
  }
}

}  // namespace
}  // namespace aquifer::schema
