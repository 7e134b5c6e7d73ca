#include "aquifer/drivers/cassandra/cql/client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

namespace aquifer::drivers::cassandra::cql {

// One TCP connection speaking v4, one request at a time (stream 0..32767 in turn).
class Connection {
 public:
  Connection(int fd, int timeout_ms) : fd_(fd), timeout_ms_(timeout_ms) {}
  ~Connection() { ::close(fd_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  static Result<std::unique_ptr<Connection>> Open(const ClientOptions& options) {
    const std::string where = fmt::format("{}:{}", options.host, options.port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(options.port);
    if (int rc = ::getaddrinfo(options.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      return Unavailable("cassandra: resolving {}: {}", where, ::gai_strerror(rc));
    }
    std::string last_error = "no address";
    for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
      int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
      if (fd < 0) continue;
      int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        rc = ::poll(&p, 1, options.connect_timeout_ms);
        if (rc == 1) {
          int err = 0;
          socklen_t len = sizeof(err);
          ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
          rc = err == 0 ? 0 : -1;
          errno = err;
        } else {
          if (rc == 0) errno = ETIMEDOUT;
          rc = -1;
        }
      }
      if (rc != 0) {
        last_error = std::strerror(errno);
        ::close(fd);
        continue;
      }
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      ::freeaddrinfo(found);
      auto connection = std::make_unique<Connection>(fd, options.request_timeout_ms);
      AQ_RETURN_IF_ERROR(connection->Handshake(options).WithContext(fmt::format("cassandra: connecting to {}", where)));
      return connection;
    }
    ::freeaddrinfo(found);
    return Unavailable("cassandra: connecting to {}: {}", where, last_error);
  }

  // Sends one request and reads its response. I/O failures are Unavailable
  // (or Timeout once the request left) and break the connection.
  Result<std::pair<FrameHeader, std::string>> Request(Opcode opcode, std::string_view body) {
    if (broken_) return Unavailable("cassandra: connection closed after an earlier failure");
    const int16_t stream = next_stream_;
    next_stream_ = static_cast<int16_t>((next_stream_ + 1) & 0x7FFF);
    const std::string frame = EncodeFrame(stream, opcode, body);
    AQ_RETURN_IF_ERROR(WriteAll(frame));
    for (;;) {
      std::string head(kHeaderSize, '\0');
      AQ_RETURN_IF_ERROR(ReadExact(head.data(), head.size()));
      auto header = DecodeHeader(head);
      if (!header.ok()) {
        broken_ = true;
        return Unavailable("cassandra: {}", header.status().message());
      }
      std::string response(static_cast<size_t>(header->length), '\0');
      AQ_RETURN_IF_ERROR(ReadExact(response.data(), response.size()));
      if (header->stream != stream) continue;  // an event (stream -1) or a late answer
      return std::make_pair(*header, std::move(response));
    }
  }

  bool broken() const { return broken_; }
  void MarkBroken() { broken_ = true; }

 private:
  Status Handshake(const ClientOptions& options) {
    BodyWriter startup;
    startup.StringMap({{"CQL_VERSION", "3.0.0"}});
    AQ_ASSIGN_OR_RETURN(auto response, Request(Opcode::kStartup, startup.data()));
    if (response.first.opcode == Opcode::kReady) return Status::OK();
    if (response.first.opcode == Opcode::kError) return ErrorOf(response, "startup");
    if (response.first.opcode != Opcode::kAuthenticate) {
      return Internal("startup answered with opcode 0x{:02x}", static_cast<int>(response.first.opcode));
    }
    if (options.username.empty()) {
      return Unauthenticated("the server asks for authentication and no username/password is configured");
    }
    std::string token;
    token.push_back('\0');
    token += options.username;
    token.push_back('\0');
    token += options.password;
    BodyWriter auth;
    auth.Bytes(token);
    AQ_ASSIGN_OR_RETURN(response, Request(Opcode::kAuthResponse, auth.data()));
    if (response.first.opcode == Opcode::kAuthSuccess) return Status::OK();
    if (response.first.opcode == Opcode::kError) return ErrorOf(response, fmt::format("authenticating as {}", options.username));
    return Internal("authentication answered with opcode 0x{:02x}", static_cast<int>(response.first.opcode));
  }

  static Status ErrorOf(const std::pair<FrameHeader, std::string>& response, std::string_view what) {
    auto body = SkipResponsePrefix(response.first.flags, response.second);
    if (!body.ok()) return body.status();
    auto error = DecodeError(*body);
    if (!error.ok()) return error.status();
    return StatusFromServerError(*error, what);
  }

  Status WriteAll(std::string_view data) {
    while (!data.empty()) {
      pollfd p{fd_, POLLOUT, 0};
      int ready = ::poll(&p, 1, timeout_ms_);
      if (ready <= 0) {
        broken_ = true;
        return Unavailable("cassandra: sending a request: {}", ready == 0 ? "timed out" : std::strerror(errno));
      }
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        broken_ = true;
        return Unavailable("cassandra: sending a request: {}", std::strerror(errno));
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::OK();
  }

  Status ReadExact(char* out, size_t size) {
    size_t done = 0;
    while (done < size) {
      pollfd p{fd_, POLLIN, 0};
      int ready = ::poll(&p, 1, timeout_ms_);
      if (ready == 0) {
        broken_ = true;
        return Timeout("cassandra: no response within {} ms; the request may or may not have been applied",
                       timeout_ms_);
      }
      if (ready < 0) {
        if (errno == EINTR) continue;
        broken_ = true;
        return Unavailable("cassandra: waiting for a response: {}", std::strerror(errno));
      }
      ssize_t n = ::recv(fd_, out + done, size - done, 0);
      if (n == 0) {
        broken_ = true;
        return Unavailable("cassandra: the server closed the connection");
      }
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        broken_ = true;
        return Unavailable("cassandra: reading a response: {}", std::strerror(errno));
      }
      done += static_cast<size_t>(n);
    }
    return Status::OK();
  }

  const int fd_;
  const int timeout_ms_;
  int16_t next_stream_ = 0;
  bool broken_ = false;
};

// A pooled connection, returned to the pool (or closed when broken) on destruction.
class Session::Lease {
 public:
  Lease(Session* session, std::unique_ptr<Connection> connection)
      : session_(session), connection_(std::move(connection)) {}
  Lease(Lease&& other) noexcept = default;
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (connection_) {
      const bool broken = connection_->broken();
      session_->Release(std::move(connection_), broken);
    }
  }
  Connection& operator*() { return *connection_; }
  Connection* operator->() { return connection_.get(); }

 private:
  Session* session_;
  std::unique_ptr<Connection> connection_;
};

Status ParseContactPoint(std::string_view contact_point, ClientOptions* options) {
  std::string_view host = contact_point;
  int port = 9042;
  if (auto colon = contact_point.rfind(':'); colon != std::string_view::npos) {
    host = contact_point.substr(0, colon);
    const std::string port_text(contact_point.substr(colon + 1));
    char* end = nullptr;
    long value = std::strtol(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || value <= 0 || value > 65535) {
      return InvalidArgument("cassandra: bad port in contact point '{}'", contact_point);
    }
    port = static_cast<int>(value);
  }
  if (host.empty()) return InvalidArgument("cassandra: contact point '{}' has no host", contact_point);
  options->host = std::string(host);
  options->port = port;
  return Status::OK();
}

std::string EncodeQueryParameters(std::span<const Value> values, const QueryOptions& options,
                                  const ClientOptions& defaults) {
  BodyWriter writer;
  writer.Short(static_cast<uint16_t>(options.consistency.value_or(defaults.consistency)));
  uint8_t flags = 0;
  if (!values.empty()) flags |= 0x01;
  if (options.page_size > 0) flags |= 0x04;
  if (!options.paging_state.empty()) flags |= 0x08;
  if (options.serial_consistency) flags |= 0x10;
  if (options.timestamp_us) flags |= 0x20;
  writer.Byte(flags);
  if (!values.empty()) {
    writer.Short(static_cast<uint16_t>(values.size()));
    for (const Value& value : values) writer.BoundValue(value);
  }
  if (options.page_size > 0) writer.Int(options.page_size);
  if (!options.paging_state.empty()) writer.Bytes(options.paging_state);
  if (options.serial_consistency) writer.Short(static_cast<uint16_t>(*options.serial_consistency));
  if (options.timestamp_us) writer.Long(*options.timestamp_us);
  return writer.Take();
}

Session::Session(const ClientOptions& options) : options_(options) {}
Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::Connect(const ClientOptions& options) {
  if (options.pool_size < 1) return InvalidArgument("cassandra: pool_size {} must be at least 1", options.pool_size);
  std::unique_ptr<Session> session(new Session(options));
  AQ_ASSIGN_OR_RETURN(Lease first, session->Acquire());
  return session;
}

int64_t Session::connections_opened() const {
  std::lock_guard lock(mu_);
  return opened_total_;
}

Result<Session::Lease> Session::Acquire() {
  {
    std::unique_lock lock(mu_);
    released_.wait(lock, [&] { return !idle_.empty() || open_ < options_.pool_size; });
    if (!idle_.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(connection));
    }
    ++open_;  // reserve the slot while connecting outside the lock
  }
  auto opened = Connection::Open(options_);
  std::lock_guard lock(mu_);
  if (!opened.ok()) {
    --open_;
    released_.notify_one();
    return opened.status();
  }
  ++opened_total_;
  return Lease(this, std::move(*opened));
}

void Session::Release(std::unique_ptr<Connection> connection, bool broken) {
  std::lock_guard lock(mu_);
  if (broken) {
    connection.reset();
    --open_;
  } else {
    idle_.push_back(std::move(connection));
  }
  released_.notify_one();
}

Result<ResultBody> Session::Run(Connection& connection, Opcode opcode, const std::string& body, std::string_view what) {
  AQ_ASSIGN_OR_RETURN(auto response, connection.Request(opcode, body));
  auto payload = SkipResponsePrefix(response.first.flags, response.second);
  if (!payload.ok()) {
    connection.MarkBroken();
    return payload.status().WithContext(std::string(what));
  }
  if (response.first.opcode == Opcode::kError) {
    auto error = DecodeError(*payload);
    if (!error.ok()) {
      connection.MarkBroken();
      return error.status().WithContext(std::string(what));
    }
    Status status = StatusFromServerError(*error, fmt::format("cassandra: {}", what));
    if (error->code == static_cast<int32_t>(ErrorCode::kProtocolError)) connection.MarkBroken();
    return status;
  }
  if (response.first.opcode != Opcode::kResult) {
    connection.MarkBroken();
    return Internal("cassandra: {}: answered with opcode 0x{:02x}", what, static_cast<int>(response.first.opcode));
  }
  auto result = DecodeResult(*payload);
  if (!result.ok()) {
    connection.MarkBroken();
    return result.status().WithContext(std::string(what));
  }
  return result;
}

Result<Rows> Session::RowsOf(ResultBody result, std::string_view) {
  if (result.kind == ResultKind::kRows) return std::move(result.rows);
  return Rows{};
}

namespace {
std::string Abbreviated(std::string_view cql) {
  constexpr size_t kMax = 120;
  if (cql.size() <= kMax) return std::string(cql);
  return std::string(cql.substr(0, kMax)) + "...";
}
}  // namespace

Result<Rows> Session::Query(std::string_view cql, std::span<const Value> values, const QueryOptions& options) {
  BodyWriter writer;
  writer.LongString(cql);
  std::string body = writer.Take() + EncodeQueryParameters(values, options, options_);
  AQ_ASSIGN_OR_RETURN(Lease connection, Acquire());
  AQ_ASSIGN_OR_RETURN(ResultBody result, Run(*connection, Opcode::kQuery, body, fmt::format("running '{}'", Abbreviated(cql))));
  return RowsOf(std::move(result), cql);
}

Result<std::vector<Row>> Session::QueryAll(std::string_view cql, std::span<const Value> values, QueryOptions options) {
  std::vector<Row> all;
  for (;;) {
    AQ_ASSIGN_OR_RETURN(Rows page, Query(cql, values, options));
    for (Row& row : page.rows) all.push_back(std::move(row));
    if (!page.metadata.paging_state) return all;
    options.paging_state = *page.metadata.paging_state;
  }
}

Result<std::shared_ptr<const PreparedStatement>> Session::Prepare(std::string_view cql) {
  {
    std::lock_guard lock(mu_);
    if (auto it = prepared_.find(std::string(cql)); it != prepared_.end()) return std::shared_ptr<const PreparedStatement>(it->second);
  }
  BodyWriter writer;
  writer.LongString(cql);
  AQ_ASSIGN_OR_RETURN(Lease connection, Acquire());
  AQ_ASSIGN_OR_RETURN(ResultBody result,
                      Run(*connection, Opcode::kPrepare, writer.data(), fmt::format("preparing '{}'", Abbreviated(cql))));
  if (result.kind != ResultKind::kPrepared) {
    return Internal("cassandra: preparing '{}': the server answered a result of kind {}", Abbreviated(cql),
                    static_cast<int>(result.kind));
  }
  auto statement = std::make_shared<PreparedStatement>();
  statement->query = std::string(cql);
  statement->id = std::move(result.prepared.id);
  statement->bind_columns = std::move(result.prepared.bind_columns);
  std::lock_guard lock(mu_);
  auto [it, inserted] = prepared_.emplace(statement->query, statement);
  return std::shared_ptr<const PreparedStatement>(it->second);
}

Result<std::string> Session::CurrentId(const PreparedStatement& statement) {
  std::lock_guard lock(mu_);
  if (auto it = prepared_.find(statement.query); it != prepared_.end()) return it->second->id;
  return statement.id;
}

Result<Rows> Session::Execute(const PreparedStatement& statement, std::span<const Value> values,
                              const QueryOptions& options) {
  if (values.size() != statement.bind_columns.size() && !statement.bind_columns.empty()) {
    return InvalidArgument("cassandra: executing '{}': {} values for {} bind markers", Abbreviated(statement.query),
                           values.size(), statement.bind_columns.size());
  }
  const std::string what = fmt::format("executing '{}'", Abbreviated(statement.query));
  const std::string parameters = EncodeQueryParameters(values, options, options_);
  AQ_ASSIGN_OR_RETURN(Lease connection, Acquire());
  for (int attempt = 0;; ++attempt) {
    AQ_ASSIGN_OR_RETURN(std::string id, CurrentId(statement));
    BodyWriter writer;
    writer.ShortBytes(id);
    std::string body = writer.Take() + parameters;
    auto result = Run(*connection, Opcode::kExecute, body, what);
    if (result.ok()) return RowsOf(std::move(*result), statement.query);
    if (result.status().code() != StatusCode::kFailedPrecondition || attempt > 0) return result.status();
    // UNPREPARED: the node forgot the statement (restart, schema change). Prepare it again here and retry once.
    BodyWriter prepare;
    prepare.LongString(statement.query);
    AQ_ASSIGN_OR_RETURN(ResultBody prepared, Run(*connection, Opcode::kPrepare, prepare.data(),
                                                 fmt::format("preparing '{}' again", Abbreviated(statement.query))));
    if (prepared.kind != ResultKind::kPrepared) return Internal("cassandra: {}: re-prepare answered no statement", what);
    std::lock_guard lock(mu_);
    auto& cached = prepared_[statement.query];
    auto fresh = std::make_shared<PreparedStatement>();
    fresh->query = statement.query;
    fresh->id = std::move(prepared.prepared.id);
    fresh->bind_columns = std::move(prepared.prepared.bind_columns);
    cached = std::move(fresh);
  }
}

Result<std::vector<Row>> Session::ExecuteAll(const PreparedStatement& statement, std::span<const Value> values,
                                             QueryOptions options) {
  std::vector<Row> all;
  for (;;) {
    AQ_ASSIGN_OR_RETURN(Rows page, Execute(statement, values, options));
    for (Row& row : page.rows) all.push_back(std::move(row));
    if (!page.metadata.paging_state) return all;
    options.paging_state = *page.metadata.paging_state;
  }
}

Status Session::Batch(BatchType type, std::span<const BatchEntry> entries, const QueryOptions& options) {
  if (entries.empty()) return Status::OK();
  if (entries.size() > 65535) return InvalidArgument("cassandra: a batch of {} statements (at most 65535)", entries.size());
  AQ_ASSIGN_OR_RETURN(Lease connection, Acquire());
  for (int attempt = 0;; ++attempt) {
    BodyWriter writer;
    writer.Byte(static_cast<uint8_t>(type)).Short(static_cast<uint16_t>(entries.size()));
    for (const BatchEntry& entry : entries) {
      if (entry.prepared != nullptr) {
        AQ_ASSIGN_OR_RETURN(std::string id, CurrentId(*entry.prepared));
        writer.Byte(1).ShortBytes(id);
      } else {
        writer.Byte(0).LongString(entry.query);
      }
      writer.Short(static_cast<uint16_t>(entry.values.size()));
      for (const Value& value : entry.values) writer.BoundValue(value);
    }
    writer.Short(static_cast<uint16_t>(options.consistency.value_or(options_.consistency)));
    uint8_t flags = 0;
    if (options.serial_consistency) flags |= 0x10;
    if (options.timestamp_us) flags |= 0x20;
    writer.Byte(flags);
    if (options.serial_consistency) writer.Short(static_cast<uint16_t>(*options.serial_consistency));
    if (options.timestamp_us) writer.Long(*options.timestamp_us);
    auto result = Run(*connection, Opcode::kBatch, writer.data(), fmt::format("running a batch of {}", entries.size()));
    if (result.ok()) return Status::OK();
    if (result.status().code() != StatusCode::kFailedPrecondition || attempt > 0) return result.status();
    // UNPREPARED: prepare every prepared entry again on this connection, then retry once.
    for (const BatchEntry& entry : entries) {
      if (entry.prepared == nullptr) continue;
      BodyWriter prepare;
      prepare.LongString(entry.prepared->query);
      AQ_ASSIGN_OR_RETURN(ResultBody prepared, Run(*connection, Opcode::kPrepare, prepare.data(),
                                                   fmt::format("preparing '{}' again", Abbreviated(entry.prepared->query))));
      std::lock_guard lock(mu_);
      auto fresh = std::make_shared<PreparedStatement>(*entry.prepared);
      fresh->id = std::move(prepared.prepared.id);
      prepared_[fresh->query] = std::move(fresh);
    }
  }
}

}  // namespace aquifer::drivers::cassandra::cql
