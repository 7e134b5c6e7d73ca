// The argument checks every Catalog implementation makes the same way (catalog.h).

#include <utility>

#include <fmt/format.h>

#include "aquifer/engine/catalog.h"
#include "aquifer/schema/schema.h"

namespace aquifer::engine {

Result<schema::SchemaPtr> CheckTableSpec(std::string_view project, const TableSpec& spec) {
  AQ_RETURN_IF_ERROR(ValidateName("table", spec.name));
  const std::string where = fmt::format("table '{}.{}'", project, spec.name);
  if (!spec.use_log && !spec.use_index && !spec.use_warehouse) {
    return InvalidArgument("{}: at least one of use_log, use_index, use_warehouse must be true",
                           where);
  }
  for (const auto& [retention, what] :
       {std::pair{spec.log_retention_ms, "log_retention_ms"},
        std::pair{spec.index_retention_ms, "index_retention_ms"},
        std::pair{spec.warehouse_retention_ms, "warehouse_retention_ms"}}) {
    if (retention < 0) {
      return InvalidArgument("{}: {} must be >= 0 (0 keeps forever), got {}", where, what,
                             retention);
    }
  }
  auto parsed = schema::Schema::Parse(spec.schema_json, spec.key);
  if (!parsed.ok()) return parsed.status().WithContext(where + ": schema");
  return *std::move(parsed);
}

Status CheckQuotas(std::string_view project, const Quotas& quotas) {
  for (const auto& [limit, what] : {std::pair{quotas.read_bytes, "read"},
                                    std::pair{quotas.write_bytes, "write"},
                                    std::pair{quotas.scan_bytes, "scan"}}) {
    if (limit && *limit < 0) {
      return InvalidArgument("{} quota of project '{}' must be >= 0 bytes, got {}", what, project,
                             *limit);
    }
  }
  return Status::OK();
}

}  // namespace aquifer::engine
