import { execFile } from "node:child_process"

export interface CliResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs the `effect-ssh` command line from the sources (through tsx), as a user would run it. */
export function runCli(args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}, stdin?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", ...args],
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr })
    )
    child.stdin!.end(stdin ?? "")
  })
}
