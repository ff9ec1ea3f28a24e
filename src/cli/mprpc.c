/*
 * mprpc: call any mprpc (or brpc baidu_std) service from a shell.
 *
 *   mprpc call TARGET SERVICE.METHOD [JSON|@FILE|-]
 *   mprpc describe TARGET [SERVICE]
 *   mprpc list URI [SERVICE...]
 *   mprpc press TARGET SERVICE.METHOD [JSON] (--qps N | --concurrency C) --duration S
 *   mprpc status TARGET | mprpc metrics TARGET
 *
 * Every verb takes --help. Output formats and exit codes: docs/cli.md.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: mprpc VERB ... (mprpc VERB --help for each)\n"
          "  call TARGET SERVICE.METHOD [JSON|@FILE|-]   call one method, print the JSON answer\n"
          "  describe TARGET [SERVICE]                    methods and message fields\n"
          "  list URI [SERVICE...]                        services and their providers\n"
          "  press TARGET SERVICE.METHOD [JSON] ...       load generator (rpc_press)\n"
          "  status TARGET                                GET /status from the provider\n"
          "  metrics TARGET                               GET /metrics from the provider\n"
          "TARGET: HOST:PORT, HOST:PORT,HOST:PORT..., or a registry URI (zk://, file://, static://).\n"
          "Exit: 0 ok, 1 framework or connection error, 2 usage or JSON error.\n");
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    usage(stderr);
    return CLI_USAGE;
  }
  const char *verb = argv[1];
  if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
    usage(stdout);
    return CLI_OK;
  }
  argc--;
  argv++;
  if (strcmp(verb, "call") == 0)
    return cli_call(argc, argv);
  if (strcmp(verb, "describe") == 0)
    return cli_describe(argc, argv);
  if (strcmp(verb, "list") == 0)
    return cli_list(argc, argv);
  if (strcmp(verb, "press") == 0)
    return cli_press(argc, argv);
  if (strcmp(verb, "status") == 0)
    return cli_http(argc, argv, "/status");
  if (strcmp(verb, "metrics") == 0)
    return cli_http(argc, argv, "/metrics");
  fprintf(stderr, "mprpc: unknown verb '%s'\n", verb);
  usage(stderr);
  return CLI_USAGE;
}
