#include "aquifer/drivers/bigtable/row_reader.h"

namespace aquifer::drivers::bigtable {

using google::bigtable::v2::ReadRowsResponse;

const Cell* Row::Find(std::string_view family, std::string_view qualifier) const {
  for (const Cell& cell : cells) {
    if (cell.family == family && cell.qualifier == qualifier) return &cell;
  }
  return nullptr;
}

void RowAssembler::Abandon() {
  in_row_ = false;
  in_cell_ = false;
  row_ = Row{};
}

Status RowAssembler::Feed(const ReadRowsResponse::CellChunk& chunk, std::vector<Row>* rows) {
  auto bad = [](std::string_view why) { return Internal("bigtable ReadRows: invalid chunk: {}", why); };
  if (chunk.reset_row()) {
    if (!in_row_) return bad("reset_row outside a row");
    if (!chunk.row_key().empty() || chunk.has_family_name() || chunk.has_qualifier() || !chunk.value().empty() ||
        chunk.timestamp_micros() != 0 || chunk.labels_size() > 0 || chunk.value_size() != 0) {
      return bad("reset_row with data");
    }
    Abandon();
    return Status::OK();
  }
  if (in_cell_) {  // the rest of a split cell: value only
    if (!chunk.row_key().empty() || chunk.has_family_name() || chunk.has_qualifier() || chunk.timestamp_micros() != 0 ||
        chunk.labels_size() > 0) {
      return bad("a split cell's later chunk carries more than a value");
    }
    row_.cells.back().value += chunk.value();
  } else {
    if (!in_row_) {
      if (chunk.row_key().empty()) return bad("a new row without a row key");
      if (!last_key_.empty() && chunk.row_key() <= last_key_) return bad("row keys out of order");
      if (!chunk.has_family_name() || !chunk.has_qualifier()) return bad("a new row without family and qualifier");
      in_row_ = true;
      row_ = Row{};
      row_.key = chunk.row_key();
    } else if (!chunk.row_key().empty() && chunk.row_key() != row_.key) {
      return bad("a different row key before commit_row");
    }
    if (chunk.has_family_name()) {
      if (!chunk.has_qualifier()) return bad("a new family without a qualifier");
      family_ = chunk.family_name().value();
    }
    if (chunk.has_qualifier()) qualifier_ = chunk.qualifier().value();
    row_.cells.push_back(Cell{family_, qualifier_, chunk.timestamp_micros(), chunk.value()});
    if (chunk.value_size() > 0) row_.cells.back().value.reserve(static_cast<size_t>(chunk.value_size()));
  }
  in_cell_ = chunk.value_size() > 0;
  if (chunk.commit_row()) {
    if (in_cell_) return bad("commit_row inside a split cell");
    last_key_ = row_.key;
    rows->push_back(std::move(row_));
    row_ = Row{};
    in_row_ = false;
  }
  return Status::OK();
}

Status RowAssembler::Finish() const {
  if (in_row_) return Internal("bigtable ReadRows: the stream ended inside row without commit_row");
  return Status::OK();
}

}  // namespace aquifer::drivers::bigtable
