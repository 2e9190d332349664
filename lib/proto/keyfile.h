/* Key files for join tokens (the I/O side of proto/token).
 *
 * Format (docs/TOKENS.md): text, one key per line as
 *     <key id> <base64url of the 32-byte secret>
 * separated by spaces or tabs; blank lines and lines whose first non-blank
 * character is '#' are ignored. The first key signs new tokens; every key
 * verifies. Key files that group or others may access are refused.
 *
 * Errors are also described in `err` (err_len bytes, may be NULL/0) as
 * "<file>:<line>: <reason>" or "<file>: <reason>", ready to print.
 * Start-up code on the main thread calls these; they block on file I/O. */
#ifndef ROOST_PROTO_KEYFILE_H
#define ROOST_PROTO_KEYFILE_H

#include <stddef.h>

#include "proto/token.h"

#define KEYFILE_MAX (64 * 1024) /* bytes; larger files are refused */

/* Parses key-file text (len bytes; `name` is used in messages) into `out`,
 * which is emptied first. Pure.
 * Returns 0, ROOST_EMALFORMED (bad line, duplicate id, no keys) or
 * ROOST_ETOOBIG (more than TOKEN_KEYRING_MAX keys or KEYFILE_MAX bytes). */
int keyfile_parse(const char *text, size_t len, const char *name, struct token_keyring *out,
                  char *err, size_t err_len);

/* Reads and parses the key file at `path` into `out`.
 * Returns 0, the errors of keyfile_parse, ROOST_EACCES (mode allows group or
 * other access, or open refused), ROOST_ENOENT, ROOST_EINVAL (not a regular
 * file) or ROOST_EIO. */
int keyfile_load(const char *path, struct token_keyring *out, char *err, size_t err_len);

/* Creates a new key file at `path` holding one fresh key (gnutls_rnd,
 * GNUTLS_RND_KEY) named key_id, or a random "k" + 8 hex digits id when key_id
 * is NULL. The file is created with O_CREAT|O_EXCL and mode 0600 and is
 * never overwritten. If out is not NULL it receives the new keyring.
 * Returns 0, ROOST_EINVAL (bad key id), ROOST_EEXIST (path exists),
 * ROOST_ECRYPTO, or ROOST_EACCES / ROOST_ENOENT / ROOST_EIO (open or write
 * failed; a partly written file is removed). */
int keyfile_generate(const char *path, const char *key_id, struct token_keyring *out, char *err,
                     size_t err_len);

#endif
