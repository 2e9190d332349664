/* The relay's configuration file (INI, read by inih): sections and keys
 * checked against config.c's key table, each value stored through
 * config_set; errors reported with file and line, all of them, not only
 * the first. Main thread only, as relay/config.h. */
#include "relay/config.h"
#include "relay/config_int.h"

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

struct load_ctx {
    struct config *c;
    FILE *f;         /* config_load_file */
    const char *mem; /* config_load_mem (f NULL): mem[0..mem_len), read to mem_pos */
    size_t mem_len, mem_pos;
    int line; /* of the line inih is working on: counted by our reader */
    int errors;
    config_error_cb cb;
    void *arg;
};

static void report(struct load_ctx *x, const char *key, const char *msg)
{
    x->errors++;
    if (x->cb != NULL)
        x->cb(x->arg, x->c->file, x->line, key, msg);
}

static int next_char(struct load_ctx *x)
{
    if (x->f != NULL)
        return getc(x->f);
    return x->mem_pos < x->mem_len ? (unsigned char)x->mem[x->mem_pos++] : EOF;
}

/* inih's reader: one whole line per call (at most num - 1 bytes with its
 * newline), NULL at the end. inih calls its handler for a line before
 * reading the next one, so counting here gives the handler its line.
 *
 * A line that does not fit inih's buffer is reported and skipped whole:
 * given in pieces, inih would parse the tail of a long comment or value as
 * a line of its own (a key!) and count lines wrongly. A NUL byte, which
 * would silently cut the line short, is reported and skips the line too. */
static char *line_reader(char *str, int num, void *stream)
{
    struct load_ctx *x = stream;
    size_t n = 0;
    int ch = EOF;
    bool nul = false;
    if (num < 2)
        return NULL;
    while (n + 1 < (size_t)num && (ch = next_char(x)) != EOF) {
        str[n++] = (char)ch;
        nul |= ch == '\0';
        if (ch == '\n')
            break;
    }
    if (n == 0)
        return NULL;
    str[n] = '\0';
    x->line++;
    if (ch != EOF && ch != '\n') {
        /* The buffer is full: fine if the line ends right here. */
        int c2 = next_char(x);
        if (c2 != EOF && c2 != '\n') {
            while ((c2 = next_char(x)) != EOF && c2 != '\n')
                ;
            char msg[64];
            snprintf(msg, sizeof(msg), "line longer than %d bytes; ignored", num - 1);
            report(x, "", msg);
            str[0] = '\0';
            return str;
        }
    }
    if (nul) {
        report(x, "", "NUL byte; line ignored");
        str[0] = '\0';
    }
    return str;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *x = user;
    int id = config_key_find(name);
    char msg[200];
    if (id < 0) {
        report(x, name, "unknown key");
        return 1;
    }
    if (strcmp(section, config_key_at(id)->section) != 0) {
        snprintf(msg, sizeof(msg), "belongs in section [%s], found in [%s]",
                 config_key_at(id)->section, section);
        report(x, name, msg);
        return 1;
    }
    if (x->c->set[id] && x->c->origin[id].file == x->c->file && x->c->origin[id].line != 0) {
        snprintf(msg, sizeof(msg), "set twice (first on line %d)", x->c->origin[id].line);
        report(x, name, msg);
        return 1;
    }
    int rc = config_set(x->c, name, value, x->c->file, x->line, msg, sizeof(msg));
    if (rc != 0) {
        char full[300];
        /* A secret's value is never echoed (logs, CI output). */
        bool secret = strcmp(section, "cluster") == 0 && strcmp(name, "redis_password") == 0;
        snprintf(full, sizeof(full), "%s: '%s'", msg, secret ? "(not shown)" : value);
        report(x, name, full);
    }
    return 1;
}

/* Parses what x reads; returns the number of errors reported. */
static int load_stream(struct load_ctx *x)
{
    int rc = ini_parse_stream(line_reader, x, on_ini, x);
    if (rc > 0) {
        /* inih reports the first line it could not parse. */
        x->line = rc;
        report(x, "", "syntax error: expected [section], key = value or a # comment");
    } else if (rc < 0) {
        report(x, "", "cannot read or allocate");
    }
    return x->errors;
}

static int set_file(struct config *c, const char *name)
{
    char *f = strdup(name);
    if (f == NULL)
        return ROOST_ENOMEM;
    free(c->file);
    c->file = f;
    return 0;
}

int config_load_file(struct config *c, const char *path, config_error_cb cb, void *arg)
{
    if (set_file(c, path) != 0)
        return ROOST_ENOMEM;
    struct load_ctx x = {.c = c, .cb = cb, .arg = arg};
    x.f = fopen(path, "r");
    if (x.f == NULL) {
        int e = errno;
        if (cb != NULL)
            cb(arg, c->file, 0, "", strerror(e));
        return e == ENOENT ? ROOST_ENOENT : ROOST_EIO;
    }
    int n = load_stream(&x);
    fclose(x.f);
    return n;
}

int config_load_mem(struct config *c, const char *name, const char *text, size_t len,
                    config_error_cb cb, void *arg)
{
    if (set_file(c, name) != 0)
        return ROOST_ENOMEM;
    struct load_ctx x = {.c = c, .mem = text, .mem_len = len, .cb = cb, .arg = arg};
    return load_stream(&x);
}
