#pragma once

// Secrets, principals and the authorization rules, independent of where the
// catalog keeps them (SQLite today, Postgres later).
//
// A secret is `aq_` + base58 of 32 CSPRNG bytes; the catalog stores only its
// HMAC-SHA256 under the server's secret key (HashSecret), so a copy of the
// catalog without the key is not enough to test guesses of a secret offline. A request's secret resolves to a Principal: the
// secret's id, whether it is the admin secret, and its grants. AuthorizeTarget
// is the one place that decides what a principal may do; Catalog::Authorize
// feeds it the ids of the named project and table as they exist right now.
//
// Rules (README.md, "Authorization"):
//   - the admin may do anything to anything that exists;
//   - a grant is (project, table or "*", permission); "*" covers every table
//     of the project, including tables created after the grant;
//   - manage implies read and write on the same target, and manage on a
//     project covers every table of it;
//   - a principal "sees" a project when it holds any grant in it, and a table
//     when it holds a project-level grant or a grant on that table;
//   - what the principal may not see answers NotFound, with the same message
//     as a thing that does not exist; what it sees but may not do answers
//     PermissionDenied.
//
// Everything here is a pure function of its arguments and thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"

namespace aquifer::engine {

enum class Permission : uint8_t { kRead, kWrite, kManage };
// "read", "write", "manage".
std::string_view PermissionName(Permission permission);
Result<Permission> ParsePermission(std::string_view name);

// One grant held by a secret. `table_id` unset means the whole project ("*"):
// for read and write every table of it, present and future; for manage the
// project itself and all its tables.
struct Grant {
  Uuid project_id;
  std::string project;            // name, for listings and messages
  std::optional<Uuid> table_id;   // unset: project level
  std::string table;              // name; "*" at project level
  Permission permission = Permission::kRead;

  bool operator==(const Grant&) const = default;
};

// Who is calling: the result of resolving a plaintext secret.
struct Principal {
  Uuid secret_id;
  bool is_admin = false;
  std::vector<Grant> grants;
};

// What a minted secret may do in its project, as POST /v1/projects/{p}/secrets
// takes it: {"read":["t1","*"],"write":[...],"manage":false}. Each entry is a
// table name or "*".
//
// Members carry default initializers so designated initializers may name any
// subset ({.read = {"*"}}) without -Wmissing-field-initializers.
struct SecretGrants {
  std::vector<std::string> read = {};
  std::vector<std::string> write = {};
  bool manage = false;
};

// Parses the JSON body above. `write` and `manage` may be omitted; unknown
// fields, wrong types and bad names are InvalidArgument naming the field.
Result<SecretGrants> ParseSecretGrants(std::string_view json);

// Checks a table name, or "*", in a grant list. InvalidArgument otherwise.
Status ValidateGrantTarget(std::string_view name);

// Names of projects and tables: [a-z][a-z0-9_]{0,62}. `kind` ("project",
// "table") goes into the InvalidArgument message, which states the rule.
Status ValidateName(std::string_view kind, std::string_view name);

// A fresh secret: "aq_" followed by the base58 form of 32 bytes from OpenSSL
// RAND_bytes. Aborts only if the CSPRNG fails (it cannot be seeded).
std::string GenerateSecret();
inline constexpr std::string_view kSecretPrefix = "aq_";

// Lower-case hex HMAC-SHA256 of the plaintext under `key` (the server's secret
// key, <data_dir>/secret.key, separate from the cursor key): what the catalog
// stores and looks secrets up by. Keyed, so the catalog alone does not let
// anyone test guesses of the operator-chosen admin secret offline; fast,
// because generated secrets carry 256 bits of entropy. Admin secrets set by
// the operator must be >= 16 chars.
std::string HashSecret(std::string_view key, std::string_view plaintext);
inline constexpr size_t kMinAdminSecretLength = 16;
inline constexpr size_t kSecretKeyBytes = 32;

// Lower-case hex plain SHA-256 of the plaintext: how catalogs stored secrets
// before schema version 5 ("sha256" rows). Only used to recognise such a row
// once and rewrite it as HashSecret.
std::string LegacySecretHash(std::string_view plaintext);

// The authorization decision for `permission` on `project` (and `table`, when
// not empty) given the ids they have in the catalog now (unset: they do not
// exist). Returns OK, NotFound or PermissionDenied per the rules above. With a
// table, every NotFound reads "table 'p.t' not found" whether the project or
// the table is missing or merely invisible; without one, "project 'p' not
// found". A project-level check asks for a project-level grant: read or write
// "*", or manage (which implies both).
Status AuthorizeTarget(const Principal& principal, std::string_view project,
                       std::string_view table, const std::optional<Uuid>& project_id,
                       const std::optional<Uuid>& table_id, Permission permission);

// The messages AuthorizeTarget uses for what is missing or invisible, so
// other code that reports a missing thing answers identically.
Status ProjectNotFound(std::string_view project);
Status TableNotFound(std::string_view project, std::string_view table);

}  // namespace aquifer::engine
