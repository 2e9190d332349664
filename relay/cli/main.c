/* roost-cli: key files and join tokens (docs/TOKENS.md).
 *
 *   roost-cli keygen [--key-id ID] --out FILE
 *   roost-cli token  --key-file F --room R --identity I --ttl DUR
 *                    [--no-publish] [--no-subscribe] [--not-before +DUR|UNIX] [--now UNIX]
 *   roost-cli verify --key-file F --room R [--skew DUR] [--now UNIX] TOKEN|-
 *   roost-cli call   --relay HOST:PORT --ca FILE --token T [...]   (call.c)
 *
 * Exit codes are listed in usage() and in docs/TOKENS.md; scripts rely on them. */
#include <getopt.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "proto/keyfile.h"
#include "proto/token.h"
#include "relay/cli/call.h"

enum exit_code {
    EXIT_OK = 0,
    EXIT_USAGE = 1,
    EXIT_KEYFILE = 2,   /* key file missing, unreadable, bad mode or bad content; I/O */
    EXIT_MALFORMED = 3, /* token syntax, caps, version */
    EXIT_BADKEY = 4,    /* key id not in the key file */
    EXIT_BADTAG = 5,    /* tag mismatch (tampered or other secret) */
    EXIT_WRONGROOM = 6,
    EXIT_EXPIRED = 7,
    EXIT_NOTYET = 8,
    EXIT_INTERNAL = 9, /* crypto library or other internal failure */
};

static const char usage_text[] =
    "usage: roost-cli <command> [options]\n"
    "\n"
    "commands:\n"
    "  keygen [--key-id ID] --out FILE\n"
    "      Write a new key file (mode 0600) holding one fresh 32-byte key.\n"
    "      Never overwrites FILE. ID: 1-16 of [A-Za-z0-9_-]; default k<8 hex digits>.\n"
    "  token --key-file F --room R --identity I --ttl DUR [--no-publish] [--no-subscribe]\n"
    "        [--not-before +DUR|UNIX] [--now UNIX]\n"
    "      Print a join token signed with the first key of F, valid from --not-before\n"
    "      (default +0s, relative to now) for DUR. Tokens always grant join; publish\n"
    "      and subscribe unless switched off.\n"
    "  verify --key-file F --room R [--skew DUR] [--now UNIX] TOKEN\n"
    "      Check TOKEN ('-' reads it from stdin) for room R and print its claims.\n"
    "      --skew is the clock-skew allowance (default 30s).\n";
/* Then call_usage_text (call.c), then this. */
static const char usage_tail[] =
    "  --help\n"
    "\n"
    "DUR is a whole number with a unit: 30s, 10m, 2h, 1d (no unit means seconds).\n"
    "--now replaces the clock (Unix seconds), for testing.\n"
    "\n"
    "exit codes (keygen, token, verify; call lists its own): 0 ok, 1 usage,\n"
    "  2 key file or I/O error, 3 malformed token,\n"
    "  4 unknown key id, 5 bad tag, 6 wrong room, 7 expired, 8 not yet valid,\n"
    "  9 internal error\n";

static void usage(FILE *f)
{
    fputs(usage_text, f);
    fputs(call_usage_text, f);
    fputs(usage_tail, f);
}

static int fail_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "roost-cli: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'roost-cli --help'.\n");
    return EXIT_USAGE;
}

/* "30s", "10m", "2h", "1d" or bare seconds. Returns 0 or -1. */
static int parse_duration(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    uint64_t mul = 1;
    if (*p == 's')
        mul = 1, p++;
    else if (*p == 'm')
        mul = 60, p++;
    else if (*p == 'h')
        mul = 3600, p++;
    else if (*p == 'd')
        mul = 86400, p++;
    if (*p != '\0' || v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (*s != '\0')
        return -1;
    *out = v;
    return 0;
}

static int exit_for(int rc)
{
    switch (rc) {
    case 0:
        return EXIT_OK;
    case ROOST_ETRUNC:
    case ROOST_EMALFORMED:
    case ROOST_ETOOBIG:
    case ROOST_EUNKNOWN:
        return EXIT_MALFORMED;
    case ROOST_EBADKEY:
        return EXIT_BADKEY;
    case ROOST_EBADTAG:
        return EXIT_BADTAG;
    case ROOST_EWRONGROOM:
        return EXIT_WRONGROOM;
    case ROOST_EEXPIRED:
        return EXIT_EXPIRED;
    case ROOST_ENOTYET:
        return EXIT_NOTYET;
    default:
        return EXIT_INTERNAL;
    }
}

static int load_keys(const char *path, struct token_keyring *ring)
{
    char err[512];
    int rc = keyfile_load(path, ring, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "roost-cli: %s\n", err);
        return EXIT_KEYFILE;
    }
    return EXIT_OK;
}

static uint64_t clock_now(void)
{
    time_t t = time(NULL);
    return t < 0 ? 0 : (uint64_t)t;
}

/* ------------------------------------------------------------ keygen */

static int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"key-id", required_argument, NULL, 'k'},
        {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *key_id = NULL, *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            key_id = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            return fail_usage("%s: bad option", "keygen");
        }
    }
    if (optind != argc)
        return fail_usage("keygen: unexpected argument '%s'", argv[optind]);
    if (out == NULL)
        return fail_usage("%s: --out FILE is required", "keygen");
    if (key_id != NULL && token_key_id_check(key_id, strlen(key_id)) != 0)
        return fail_usage("keygen: bad key id '%s' (want 1-16 of [A-Za-z0-9_-])", key_id);

    struct token_keyring ring;
    char err[512];
    int rc = keyfile_generate(out, key_id, &ring, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "roost-cli: %s\n", err);
        return EXIT_KEYFILE;
    }
    fprintf(stderr, "roost-cli: wrote key '%s' to %s (mode 0600)\n", ring.keys[0].id, out);
    token_keyring_wipe(&ring);
    return EXIT_OK;
}

/* ------------------------------------------------------------ token */

static int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {
        {"key-file", required_argument, NULL, 'f'},
        {"room", required_argument, NULL, 'r'},
        {"identity", required_argument, NULL, 'i'},
        {"ttl", required_argument, NULL, 't'},
        {"no-publish", no_argument, NULL, 'P'},
        {"no-subscribe", no_argument, NULL, 'S'},
        {"not-before", required_argument, NULL, 'b'},
        {"now", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *key_file = NULL, *room = NULL, *identity = NULL, *ttl_s = NULL, *nbf_s = "+0s";
    const char *now_s = NULL;
    unsigned perms = TOKEN_PERM_ALL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            key_file = optarg;
            break;
        case 'r':
            room = optarg;
            break;
        case 'i':
            identity = optarg;
            break;
        case 't':
            ttl_s = optarg;
            break;
        case 'P':
            perms &= ~(unsigned)TOKEN_PERM_PUBLISH;
            break;
        case 'S':
            perms &= ~(unsigned)TOKEN_PERM_SUBSCRIBE;
            break;
        case 'b':
            nbf_s = optarg;
            break;
        case 'n':
            now_s = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            return fail_usage("%s: bad option", "token");
        }
    }
    if (optind != argc)
        return fail_usage("token: unexpected argument '%s'", argv[optind]);
    if (key_file == NULL || room == NULL || identity == NULL || ttl_s == NULL)
        return fail_usage("%s: --key-file, --room, --identity and --ttl are required", "token");

    uint64_t now, ttl, nbf;
    if (now_s == NULL)
        now = clock_now();
    else if (parse_u64(now_s, &now) != 0)
        return fail_usage("token: bad --now '%s' (Unix seconds)", now_s);
    if (parse_duration(ttl_s, &ttl) != 0 || ttl == 0)
        return fail_usage("token: bad --ttl '%s' (e.g. 30s, 10m, 2h, 1d; not zero)", ttl_s);
    if (nbf_s[0] == '+') {
        uint64_t d;
        if (parse_duration(nbf_s + 1, &d) != 0 || d > UINT64_MAX - now)
            return fail_usage("token: bad --not-before '%s' (+DUR or Unix seconds)", nbf_s);
        nbf = now + d;
    } else if (parse_u64(nbf_s, &nbf) != 0) {
        return fail_usage("token: bad --not-before '%s' (+DUR or Unix seconds)", nbf_s);
    }
    if (ttl > UINT64_MAX - nbf)
        return fail_usage("token: --ttl '%s' overflows", ttl_s);

    uint8_t id[TOKEN_ID_LEN];
    if (gnutls_rnd(GNUTLS_RND_RANDOM, id, sizeof(id)) < 0) {
        fprintf(stderr, "roost-cli: random generator failed\n");
        return EXIT_INTERNAL;
    }
    struct token_claims claims;
    if (token_claims_set(&claims, room, strlen(room), identity, strlen(identity), perms, nbf,
                         nbf + ttl, id) != 0) {
        fprintf(stderr,
                "roost-cli: room and identity must be 1-%d bytes of UTF-8 without "
                "control characters\n",
                TOKEN_ROOM_MAX);
        return EXIT_USAGE;
    }

    struct token_keyring ring;
    int ec = load_keys(key_file, &ring);
    if (ec != EXIT_OK)
        return ec;
    char tok[TOKEN_MAX_LEN + 1];
    int n = token_mint(token_keyring_signer(&ring), &claims, tok, sizeof(tok));
    token_keyring_wipe(&ring);
    if (n < 0) {
        fprintf(stderr, "roost-cli: cannot mint token: %s\n", roost_strerror(n));
        return EXIT_INTERNAL;
    }
    printf("%s\n", tok);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_KEYFILE;
}

/* ------------------------------------------------------------ verify */

static void print_claims(const struct token_claims *c)
{
    printf("key_id=%s\n", c->key_id);
    printf("room=%s\n", c->room);
    printf("identity=%s\n", c->identity);
    printf("perms=%s%s%s\n", c->perms & TOKEN_PERM_JOIN ? "join" : "",
           c->perms & TOKEN_PERM_PUBLISH ? ",publish" : "",
           c->perms & TOKEN_PERM_SUBSCRIBE ? ",subscribe" : "");
    printf("not_before=%" PRIu64 "\n", c->nbf);
    printf("expires=%" PRIu64 "\n", c->exp);
    printf("id=");
    for (int i = 0; i < TOKEN_ID_LEN; i++)
        printf("%02x", c->id[i]);
    printf("\n");
}

static int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"key-file", required_argument, NULL, 'f'}, {"room", required_argument, NULL, 'r'},
        {"skew", required_argument, NULL, 's'},     {"now", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *key_file = NULL, *room = NULL, *skew_s = NULL, *now_s = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            key_file = optarg;
            break;
        case 'r':
            room = optarg;
            break;
        case 's':
            skew_s = optarg;
            break;
        case 'n':
            now_s = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            return fail_usage("%s: bad option", "verify");
        }
    }
    if (key_file == NULL || room == NULL)
        return fail_usage("%s: --key-file and --room are required", "verify");
    if (argc - optind != 1)
        return fail_usage("%s: exactly one TOKEN argument ('-' for stdin) is required", "verify");

    uint64_t now, skew = TOKEN_DEFAULT_SKEW_S;
    if (now_s == NULL)
        now = clock_now();
    else if (parse_u64(now_s, &now) != 0)
        return fail_usage("verify: bad --now '%s' (Unix seconds)", now_s);
    if (skew_s != NULL && (parse_duration(skew_s, &skew) != 0 || skew > UINT32_MAX))
        return fail_usage("verify: bad --skew '%s' (e.g. 30s)", skew_s);

    /* One byte over the cap so that an oversized token is reported as such. */
    char buf[TOKEN_MAX_LEN + 2];
    const char *tok = argv[optind];
    size_t len = strlen(tok);
    if (strcmp(tok, "-") == 0) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, stdin);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
        buf[n] = '\0';
        tok = buf;
        len = n;
    }

    struct token_keyring ring;
    int ec = load_keys(key_file, &ring);
    if (ec != EXIT_OK)
        return ec;
    struct token_claims claims;
    int rc = token_verify(tok, len, &ring, room, strlen(room), now, (uint32_t)skew, &claims);
    token_keyring_wipe(&ring);
    if (rc == 0) {
        printf("result=valid\n");
        print_claims(&claims);
    } else {
        printf("result=invalid\n");
        /* Authenticated claims are worth showing: they say why. */
        if (rc == ROOST_EWRONGROOM || rc == ROOST_EEXPIRED || rc == ROOST_ENOTYET)
            print_claims(&claims);
        fprintf(stderr, "roost-cli: token rejected: %s\n", roost_strerror(rc));
    }
    fflush(stdout);
    return exit_for(rc);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    /* Subcommands parse argv[1..]: getopt sees the command name as argv[0]. */
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(cmd, "call") == 0)
        return cmd_call(argc - 1, argv + 1);
    return fail_usage("unknown command '%s'", cmd);
}
