#include "aquifer/engine/wire.h"

#include <algorithm>

namespace aquifer::engine {
namespace {

constexpr uint8_t kWriteMessageVersion = 1;
constexpr uint8_t kWriteReportVersion = 1;
constexpr uint8_t kDeadLetterVersion = 1;
constexpr uint64_t kMaxParts = 1u << 20;

size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

bool ReadUuid(ByteReader* reader, Uuid* id) {
  std::string_view raw;
  if (!reader->Bytes(16, &raw)) return false;
  auto parsed = Uuid::FromBytes(raw);
  if (!parsed.ok()) return false;
  *id = *parsed;
  return true;
}

bool ReadParts(ByteReader* reader, uint32_t* part, uint32_t* parts) {
  uint64_t part_value = 0, parts_value = 0;
  if (!reader->Varint(&part_value) || !reader->Varint(&parts_value)) return false;
  if (parts_value == 0 || parts_value > kMaxParts || part_value >= parts_value) return false;
  *part = static_cast<uint32_t>(part_value);
  *parts = static_cast<uint32_t>(parts_value);
  return true;
}

}  // namespace

void AppendVarint(std::string* out, uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void AppendFixed64(std::string* out, uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(value >> shift));
}

bool ByteReader::Byte(uint8_t* value) {
  if (pos_ >= data_.size()) return false;
  *value = static_cast<uint8_t>(data_[pos_++]);
  return true;
}

bool ByteReader::Varint(uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= data_.size()) return false;
    uint8_t byte = static_cast<uint8_t>(data_[pos_++]);
    if (shift == 63 && byte > 1) return false;  // would overflow 64 bits
    result |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      if (byte == 0 && shift > 0) return false;  // non-canonical: a redundant zero group
      *value = result;
      return true;
    }
  }
  return false;
}

bool ByteReader::Fixed64(uint64_t* value) {
  if (data_.size() - pos_ < 8) return false;
  uint64_t result = 0;
  for (int byte_idx = 0; byte_idx < 8; ++byte_idx) {
    result = (result << 8) | static_cast<uint8_t>(data_[pos_ + byte_idx]);
  }
  pos_ += 8;
  *value = result;
  return true;
}

bool ByteReader::Bytes(size_t length, std::string_view* value) {
  if (data_.size() - pos_ < length) return false;
  *value = data_.substr(pos_, length);
  pos_ += length;
  return true;
}

bool ByteReader::LengthPrefixed(std::string_view* value) {
  uint64_t length = 0;
  if (!Varint(&length)) return false;
  if (length > data_.size() - pos_) return false;
  return Bytes(static_cast<size_t>(length), value);
}

size_t EncodedRecordSize(const driver::Record& record) {
  return VarintSize(record.key.size()) + record.key.size() + 8 + VarintSize(record.avro.size()) +
         record.avro.size();
}

std::string EncodeWriteMessage(const WriteMessage& message) {
  size_t size = kWriteMessageOverhead;
  for (const auto& record : message.records) size += EncodedRecordSize(record);
  std::string out;
  out.reserve(size);
  out.push_back(static_cast<char>(kWriteMessageVersion));
  out.append(message.write_id);
  out.append(message.instance_id.AsBytes());
  AppendVarint(&out, message.part);
  AppendVarint(&out, message.parts);
  AppendVarint(&out, message.records.size());
  for (const auto& record : message.records) {
    AppendVarint(&out, record.key.size());
    out.append(record.key);
    AppendFixed64(&out, static_cast<uint64_t>(record.timestamp_ms));
    AppendVarint(&out, record.avro.size());
    out.append(record.avro);
  }
  return out;
}

Result<WriteMessage> DecodeWriteMessage(std::string_view data) {
  ByteReader reader(data);
  uint8_t version = 0;
  if (!reader.Byte(&version)) return Corruption("write message: empty");
  if (version != kWriteMessageVersion) {
    return Corruption("write message: unknown version {} (this binary reads {})", version,
                      kWriteMessageVersion);
  }
  WriteMessage message;
  std::string_view write_id;
  uint64_t count = 0;
  if (!reader.Bytes(kWriteIdSize, &write_id) || !ReadUuid(&reader, &message.instance_id) ||
      !ReadParts(&reader, &message.part, &message.parts) || !reader.Varint(&count)) {
    return Corruption("write message: truncated or malformed header ({} bytes)", data.size());
  }
  message.write_id.assign(write_id);
  // Each record takes at least 10 bytes, which bounds the reservation.
  if (count > data.size() / 10 + 1) {
    return Corruption("write message: claims {} records in {} bytes", count, data.size());
  }
  message.records.resize(static_cast<size_t>(count));
  for (size_t record_idx = 0; record_idx < count; ++record_idx) {
    std::string_view key, avro;
    uint64_t timestamp = 0;
    if (!reader.LengthPrefixed(&key) || !reader.Fixed64(&timestamp) ||
        !reader.LengthPrefixed(&avro)) {
      return Corruption("write message: record {} of {} is truncated or malformed", record_idx,
                        count);
    }
    auto& record = message.records[record_idx];
    record.key.assign(key);
    record.avro.assign(avro);
    record.timestamp_ms = static_cast<int64_t>(timestamp);
  }
  if (!reader.done()) {
    return Corruption("write message: {} trailing bytes", reader.rest().size());
  }
  return message;
}

std::string WriteMessageId(const WriteMessage& message) {
  std::string id = message.write_id;
  for (int shift = 24; shift >= 0; shift -= 8) id.push_back(static_cast<char>(message.part >> shift));
  return id;
}

// version(1) ‖ lp store ‖ lp reason ‖ dead_ms(8) ‖ varint attempts ‖ lp ordering key ‖ lp data
std::string EncodeDeadLetter(const DeadLetter& letter) {
  std::string out;
  out.reserve(32 + letter.store.size() + letter.reason.size() + letter.ordering_key.size() +
              letter.data.size());
  out.push_back(static_cast<char>(kDeadLetterVersion));
  for (const std::string* text : {&letter.store, &letter.reason}) {
    AppendVarint(&out, text->size());
    out.append(*text);
  }
  AppendFixed64(&out, static_cast<uint64_t>(letter.dead_ms));
  AppendVarint(&out, static_cast<uint64_t>(std::max(letter.attempts, 0)));
  for (const std::string* text : {&letter.ordering_key, &letter.data}) {
    AppendVarint(&out, text->size());
    out.append(*text);
  }
  return out;
}

Result<DeadLetter> DecodeDeadLetter(std::string_view data) {
  ByteReader reader(data);
  uint8_t version = 0;
  if (!reader.Byte(&version)) return Corruption("dead letter: empty");
  if (version != kDeadLetterVersion) {
    return Corruption("dead letter: unknown version {} (this binary reads {})", version,
                      kDeadLetterVersion);
  }
  std::string_view store, reason, ordering_key, original;
  uint64_t dead_ms = 0, attempts = 0;
  if (!reader.LengthPrefixed(&store) || !reader.LengthPrefixed(&reason) ||
      !reader.Fixed64(&dead_ms) || !reader.Varint(&attempts) || attempts > (1u << 30) ||
      !reader.LengthPrefixed(&ordering_key) || !reader.LengthPrefixed(&original) || !reader.done()) {
    return Corruption("dead letter: truncated or malformed ({} bytes)", data.size());
  }
  DeadLetter letter;
  letter.store.assign(store);
  letter.reason.assign(reason);
  letter.dead_ms = static_cast<int64_t>(dead_ms);
  letter.attempts = static_cast<int32_t>(attempts);
  letter.ordering_key.assign(ordering_key);
  letter.data.assign(original);
  return letter;
}

std::string EncodeWriteReport(const WriteReport& report) {
  std::string out;
  out.reserve(1 + 16 + 16 + 10 + 1 + 16);
  out.push_back(static_cast<char>(kWriteReportVersion));
  out.append(report.write_id);
  out.append(report.instance_id.AsBytes());
  AppendVarint(&out, report.part);
  AppendVarint(&out, report.parts);
  out.push_back(static_cast<char>(report.stores));
  AppendVarint(&out, static_cast<uint64_t>(report.records));
  AppendVarint(&out, static_cast<uint64_t>(report.bytes));
  return out;
}

Result<WriteReport> DecodeWriteReport(std::string_view data) {
  ByteReader reader(data);
  uint8_t version = 0;
  if (!reader.Byte(&version)) return Corruption("write report: empty");
  if (version != kWriteReportVersion) {
    return Corruption("write report: unknown version {} (this binary reads {})", version,
                      kWriteReportVersion);
  }
  WriteReport report;
  std::string_view write_id;
  uint64_t records = 0, bytes = 0;
  if (!reader.Bytes(kWriteIdSize, &write_id) || !ReadUuid(&reader, &report.instance_id) ||
      !ReadParts(&reader, &report.part, &report.parts) || !reader.Byte(&report.stores) ||
      !reader.Varint(&records) || !reader.Varint(&bytes) || !reader.done()) {
    return Corruption("write report: truncated or malformed ({} bytes)", data.size());
  }
  report.write_id.assign(write_id);
  report.records = static_cast<int64_t>(records);
  report.bytes = static_cast<int64_t>(bytes);
  return report;
}

}  // namespace aquifer::engine
