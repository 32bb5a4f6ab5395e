/**
 * `rendition`: the command-line client of a Rendition server (bin/rendition.js runs this file).
 * Every command calls the API through the generated Connect clients; `--json` prints the API's
 * own JSON (one object per result, NDJSON for watches). Exit codes: 0 success, 1 an API or
 * network error, 2 a usage or configuration error, 3 a job that ended other than completed.
 */
import { Command, CommanderError } from "commander";
import { contextOf, type Context } from "./context.js";
import { registerJobs } from "./jobs.command.js";
import { EXIT, printError, processIo, type Io } from "./output.js";
import { registerKeys, registerOrigins, registerPresets } from "./resources.command.js";
import { registerSubmit } from "./submit.command.js";
import { registerWebhooks } from "./webhooks.command.js";

export function buildProgram(io: Io, env: NodeJS.ProcessEnv, setExit: (code: number) => void): Command {
  const program = new Command("rendition")
    .description("Command-line client of a Rendition server. With no flags it uses the credentials `npm start` wrote to data/credentials.json.")
    .option("--url <url>", "the server (default: RENDITION_URL, else http://localhost:8080)")
    .option("--api-key <key>", "API key (default: RENDITION_API_KEY, else credentials.json)")
    .option("--org <id>", "organization id (default: RENDITION_ORG, else credentials.json)")
    .option("--data-dir <dir>", "where credentials.json is (default: RENDITION_DATA_DIR, else ./data, else the clone's data/)")
    .option("--json", "machine-readable output: the API's JSON, one object per line")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, "")), writeErr: (s) => io.err(s.replace(/\n$/, "")) });

  const run = async (command: Command, action: (ctx: Context) => Promise<void>) => {
    const ctx = contextOf(command, io, env);
    try {
      await action(ctx);
    } catch (err) {
      setExit(printError(io, err, ctx.json));
    }
  };
  registerSubmit(program, run);
  registerJobs(program, run);
  registerOrigins(program, run);
  registerPresets(program, run);
  registerKeys(program, run);
  registerWebhooks(program, run, env);
  // Subcommands inherit the exit override and output (commander copies settings at creation).
  return program;
}

/** Runs the CLI on `argv` (without node and the script) and resolves with the exit code. */
export async function main(argv: string[], io: Io = processIo, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(io, env, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; usage errors were printed by commander.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    return printError(io, err, false);
  }
  return code;
}

if (process.argv[1] && /rendition(\.js)?$|cli[\\/]main\.ts$/.test(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2));
}
