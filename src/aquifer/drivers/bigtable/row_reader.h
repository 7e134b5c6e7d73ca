#pragma once

// The ReadRows CellChunk state machine: turns the chunks a ReadRows stream
// sends into whole rows. A row arrives as chunks of cells; a cell's value may
// be split over several chunks (value_size > 0 on every chunk but its last);
// `reset_row` drops what arrived of the current row (it is sent again), and
// `commit_row` completes it. Row keys come in strictly ascending order. A
// chunk that breaks these rules is an Internal error (the stream must be
// abandoned), as the official clients' acceptance tests demand.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "google/bigtable/v2/bigtable.pb.h"

namespace aquifer::drivers::bigtable {

struct Cell {
  std::string family;
  std::string qualifier;
  int64_t timestamp_micros = 0;
  std::string value;
};

struct Row {
  std::string key;
  std::vector<Cell> cells;  // in the order the server sent them (by family, column, newest first)

  // The first (newest) cell of family:qualifier, or null.
  const Cell* Find(std::string_view family, std::string_view qualifier) const;
};

class RowAssembler {
 public:
  // Takes one chunk; a row it commits is appended to `rows`.
  Status Feed(const google::bigtable::v2::ReadRowsResponse::CellChunk& chunk, std::vector<Row>* rows);
  // At the end of a stream: Internal when a row is still open (no commit_row came).
  Status Finish() const;
  // Whether a row is open; the key of the last committed row (empty before any).
  bool in_row() const { return in_row_; }
  const std::string& last_key() const { return last_key_; }
  // Drops an open row (before resuming a broken stream after last_key()).
  void Abandon();

 private:
  bool in_row_ = false;
  bool in_cell_ = false;  // a split cell waits for its remaining chunks
  Row row_;
  std::string family_, qualifier_;
  std::string last_key_;
};

}  // namespace aquifer::drivers::bigtable
