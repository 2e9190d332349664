/* roost-cli call: a participant with real audio (docs/CLIENT.md, "roost-cli
 * call"). */
#ifndef ROOST_CLI_CALL_H
#define ROOST_CLI_CALL_H

/* The usage text of the call subcommand (also part of roost-cli --help). */
extern const char call_usage_text[];

/* argv[0] is "call". Returns the process exit code (call_usage_text lists
 * them). */
int cmd_call(int argc, char **argv);

#endif
