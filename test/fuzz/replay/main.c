/* Replay driver for fuzz targets in gcc builds: feeds every file of the
 * target's corpus test/fuzz/corpus/<name> (or the files/dirs given as
 * arguments) to
 * LLVMFuzzerTestOneInput once, and prints TAP so prove counts it.
 * A crash or sanitizer report fails the test. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_INPUT (1u << 20)

static int replay_file(const char *path, unsigned *count)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    uint8_t *data = malloc(REPLAY_MAX_INPUT);
    if (data == NULL) {
        fclose(f);
        return -1;
    }
    size_t n = fread(data, 1, REPLAY_MAX_INPUT, f);
    fclose(f);
    /* Exact-size copy so ASan catches reads past the input. */
    uint8_t *exact = malloc(n ? n : 1);
    if (exact == NULL) {
        free(data);
        return -1;
    }
    memcpy(exact, data, n);
    free(data);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    (*count)++;
    return 0;
}

static int replay_path(const char *path, unsigned *count)
{
    struct stat st;
    if (stat(path, &st) == -1)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return replay_file(path, count);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (replay_path(sub, count) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    int rc = 0;
    printf("1..1\n");
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (replay_path(argv[i], &count) != 0)
                rc = -1;
    } else {
        /* replay_<name> runs test/fuzz/corpus/<name>, relative to the
         * source root (prove runs from there). */
        const char *base = strrchr(argv[0], '/');
        base = base ? base + 1 : argv[0];
        if (strncmp(base, "replay_", 7) != 0) {
            printf("not ok 1 - cannot derive corpus from %s\n", argv[0]);
            return 1;
        }
        char dir[512];
        snprintf(dir, sizeof(dir), "test/fuzz/corpus/%s", base + 7);
        rc = replay_path(dir, &count);
    }
    if (rc != 0 || count == 0) {
        printf("not ok 1 - replay corpus (%u inputs, read error or empty corpus)\n", count);
        return 1;
    }
    printf("ok 1 - replayed %u inputs\n", count);
    return 0;
}
