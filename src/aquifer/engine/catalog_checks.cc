// What every Catalog implementation does the same way before its database (catalog.h).

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

TableInfo NewTable(std::string_view project, const Uuid& project_id, const TableSpec& spec,
                   schema::SchemaPtr schema, int64_t now_ms) {
  TableInfo table;
  table.table_id = Uuid::Random();
  table.project_id = project_id;
  table.project = std::string(project);
  table.name = spec.name;
  table.created_ms = now_ms;
  driver::InstanceInfo& instance = table.primary;
  instance.instance_id = Uuid::Random();
  instance.project = table.project;
  instance.table = table.name;
  instance.schema = std::move(schema);
  instance.use_log = spec.use_log;
  instance.use_index = spec.use_index;
  instance.use_warehouse = spec.use_warehouse;
  instance.log_retention_ms = spec.log_retention_ms;
  instance.index_retention_ms = spec.index_retention_ms;
  instance.warehouse_retention_ms = spec.warehouse_retention_ms;
  return table;
}

Status TooManyUnfinishedJobs(int64_t busy) {
  return ResourceExhausted("this secret already has {} SQL jobs pending or running, the most allowed", busy);
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
