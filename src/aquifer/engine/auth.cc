#include "aquifer/engine/auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "aquifer/base/base58.h"
#include "aquifer/base/text.h"

namespace aquifer::engine {
namespace {

constexpr std::string_view kNameRule =
    "names must match [a-z][a-z0-9_]{0,62}: a lower-case letter, then up to 62 lower-case "
    "letters, digits or underscores";

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Permissions a single grant confers: manage implies read and write.
bool Confers(Permission granted, Permission wanted) {
  return granted == wanted || granted == Permission::kManage;
}

Result<std::vector<std::string>> ParseNameList(const nlohmann::json& body, const char* field) {
  std::vector<std::string> names;
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return names;
  if (!it->is_array()) {
    return InvalidArgument("{}: expected an array of table names or \"*\"", field);
  }
  for (size_t idx = 0; idx < it->size(); ++idx) {
    const auto& entry = (*it)[idx];
    if (!entry.is_string()) {
      return InvalidArgument("{}[{}]: expected a table name or \"*\"", field, idx);
    }
    std::string name = entry.get<std::string>();
    Status status = ValidateGrantTarget(name);
    if (!status.ok()) return status.WithContext(fmt::format("{}[{}]", field, idx));
    names.push_back(std::move(name));
  }
  return names;
}

}  // namespace

std::string_view PermissionName(Permission permission) {
  switch (permission) {
    case Permission::kRead: return "read";
    case Permission::kWrite: return "write";
    case Permission::kManage: return "manage";
  }
  return "unknown";
}

Result<Permission> ParsePermission(std::string_view name) {
  if (name == "read") return Permission::kRead;
  if (name == "write") return Permission::kWrite;
  if (name == "manage") return Permission::kManage;
  return InvalidArgument("unknown permission '{}': expected read, write or manage", name);
}

Result<SecretGrants> ParseSecretGrants(std::string_view json) {
  nlohmann::json body = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return InvalidArgument("secret grants: the body is not valid JSON");
  if (!body.is_object()) {
    return InvalidArgument("secret grants: expected an object like {{\"read\":[\"t1\",\"*\"]}}");
  }
  for (const auto& [field, value] : body.items()) {
    if (field != "read" && field != "write" && field != "manage") {
      return InvalidArgument("{}: unknown field; expected read, write or manage", field);
    }
  }
  SecretGrants grants;
  AQ_ASSIGN_OR_RETURN(grants.read, ParseNameList(body, "read"));
  AQ_ASSIGN_OR_RETURN(grants.write, ParseNameList(body, "write"));
  if (auto it = body.find("manage"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return InvalidArgument("manage: expected true or false");
    grants.manage = it->get<bool>();
  }
  return grants;
}

Status ValidateName(std::string_view kind, std::string_view name) {
  if (IsValidName(name)) return Status::OK();
  return InvalidArgument("invalid {} name '{}': {}", kind, name, kNameRule);
}

Status ValidateGrantTarget(std::string_view name) {
  if (name == "*") return Status::OK();
  return ValidateName("table", name);
}

std::string GenerateSecret() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    // A guessable secret is worse than no server: this only happens when the
    // CSPRNG cannot be seeded, an environment error.
    std::abort();
  }
  std::string secret(kSecretPrefix);
  secret += Base58Encode({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
  return secret;
}

std::string HashSecret(std::string_view key, std::string_view plaintext) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  // HMAC accepts an empty key (a null pointer with length 0 is not allowed).
  static const unsigned char kNoKey = 0;
  const void* key_bytes = key.empty() ? static_cast<const void*>(&kNoKey)
                                      : static_cast<const void*>(key.data());
  HMAC(EVP_sha256(), key_bytes, static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(), digest.data(),
       &length);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest.data()), length));
}

std::string LegacySecretHash(std::string_view plaintext) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(),
         digest.data());
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

Status ProjectNotFound(std::string_view project) {
  return NotFound("project '{}' not found", project);
}

Status TableNotFound(std::string_view project, std::string_view table) {
  return NotFound("table '{}.{}' not found", project, table);
}

Status AuthorizeTarget(const Principal& principal, std::string_view project,
                       std::string_view table, const std::optional<Uuid>& project_id,
                       const std::optional<Uuid>& table_id, Permission permission) {
  const bool table_level = !table.empty();
  auto not_found = [&] {
    return table_level ? TableNotFound(project, table) : ProjectNotFound(project);
  };
  if (!project_id || (table_level && !table_id)) return not_found();
  if (principal.is_admin) return Status::OK();

  bool sees = false;     // any grant that makes the target visible
  bool allowed = false;  // a grant that confers `permission` on the target
  for (const Grant& grant : principal.grants) {
    if (grant.project_id != *project_id) continue;
    if (!table_level) {
      sees = true;  // any grant in a project makes the project visible
      if (!grant.table_id && Confers(grant.permission, permission)) allowed = true;
    } else if (!grant.table_id || *grant.table_id == *table_id) {
      sees = true;
      if (Confers(grant.permission, permission)) allowed = true;
    }
  }
  if (!sees) return not_found();
  if (allowed) return Status::OK();
  if (table_level) {
    return PermissionDenied("this secret may not {} table '{}.{}'", PermissionName(permission),
                            project, table);
  }
  return PermissionDenied("this secret may not {} project '{}'", PermissionName(permission),
                          project);
}

}  // namespace aquifer::engine
