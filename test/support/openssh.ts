/**
 * Runners for the real OpenSSH client tools: `ssh` against a test server, `ssh-keygen`, and a
 * private `ssh-agent`. Every process is started here and stopped by its own pid.
 */
import { spawn } from "node:child_process"
import { existsSync, rmSync } from "node:fs"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { findPeer, requirePeer } from "./peers.js"

export interface RunResult {
  readonly stdout: string
  readonly stderr: string
  /** null when the process died from a signal (including our timeout kill). */
  readonly exitCode: number | null
  readonly signal: NodeJS.Signals | null
  readonly timedOut: boolean
}

export interface RunOptions {
  readonly stdin?: string | Uint8Array
  readonly env?: Readonly<Record<string, string>>
  readonly timeoutMs?: number
  readonly cwd?: string
}

/** Runs `file` with `args`, collecting its output; kills it (by pid) after `timeoutMs`. */
export function run(file: string, args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: { ...process.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {})
    })
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill("SIGKILL")
    }, options.timeoutMs ?? 20_000)
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk))
    // a child that exits before reading its stdin must not crash the test with EPIPE
    child.stdin.on("error", () => {})
    child.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on("close", (exitCode, signal) => {
      clearTimeout(timer)
      resolve({
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
        exitCode,
        signal,
        timedOut
      })
    })
    child.stdin.end(options.stdin ?? "")
  })
}

/** Like `run`, but throws with the output when the exit code is not 0. */
export async function runChecked(
  file: string,
  args: ReadonlyArray<string>,
  options: RunOptions = {}
): Promise<RunResult> {
  const result = await run(file, args, options)
  if (result.exitCode !== 0) {
    throw new Error(
      `${file} ${args.join(" ")} failed (exit ${result.exitCode ?? result.signal}${result.timedOut ? ", timed out" : ""}):\n${result.stderr}${result.stdout}`
    )
  }
  return result
}

export interface SshOptions {
  readonly port: number
  readonly host?: string
  readonly user: string
  /** Remote command; omitted means no command (use `extraArgs` such as `-N` or `-s sftp`). */
  readonly command?: string
  readonly identityFile?: string
  /**
   * Password for password or keyboard-interactive auth. Given through `sshpass` when it is
   * installed (or `passwordVia: "sshpass"`), otherwise through an SSH_ASKPASS script.
   */
  readonly password?: string
  readonly passwordVia?: "sshpass" | "askpass"
  /** Extra `-o Key=Value` options; they override the defaults below. */
  readonly options?: Readonly<Record<string, string>>
  readonly extraArgs?: ReadonlyArray<string>
  readonly stdin?: string | Uint8Array
  readonly env?: Readonly<Record<string, string>>
  readonly timeoutMs?: number
}

/**
 * Runs the real `ssh` client. Defaults: no host key checking, no known_hosts, no user config,
 * BatchMode unless a password is given, only the given identity.
 */
export async function runSsh(options: SshOptions): Promise<RunResult> {
  const ssh = requirePeer("ssh")
  const usesPassword = options.password !== undefined
  const sshOptions: Record<string, string> = {
    BatchMode: usesPassword ? "no" : "yes",
    StrictHostKeyChecking: "no",
    UserKnownHostsFile: "/dev/null",
    GlobalKnownHostsFile: "/dev/null",
    LogLevel: "ERROR",
    ConnectTimeout: "10",
    // only the key we name, never ~/.ssh keys or an agent from the environment
    IdentitiesOnly: "yes",
    IdentityAgent: "none",
    ...(options.identityFile === undefined ? { PubkeyAuthentication: "no" } : {}),
    ...(usesPassword ? { NumberOfPasswordPrompts: "1" } : {}),
    ...options.options
  }
  const args = [
    "-F",
    "/dev/null",
    "-p",
    String(options.port),
    "-l",
    options.user,
    ...(options.identityFile !== undefined ? ["-i", options.identityFile] : []),
    ...Object.entries(sshOptions).flatMap(([key, value]) => ["-o", `${key}=${value}`]),
    ...(options.extraArgs ?? []),
    options.host ?? "127.0.0.1",
    ...(options.command !== undefined ? [options.command] : [])
  ]
  const runOptions: RunOptions = {
    timeoutMs: options.timeoutMs ?? 20_000,
    ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
    ...(options.env !== undefined ? { env: options.env } : {})
  }
  if (options.password === undefined) return run(ssh, args, runOptions)

  const via = options.passwordVia ?? (findPeer("sshpass") !== undefined ? "sshpass" : "askpass")
  if (via === "sshpass") {
    // -e reads the password from SSHPASS, keeping it out of the process list
    return run(requirePeer("sshpass"), ["-e", ssh, ...args], {
      ...runOptions,
      env: { ...options.env, SSHPASS: options.password }
    })
  }
  const password = options.password
  return withAskpass((askpass) =>
    run(ssh, args, {
      ...runOptions,
      env: {
        ...options.env,
        SSH_ASKPASS: askpass,
        SSH_ASKPASS_REQUIRE: "force",
        DISPLAY: process.env.DISPLAY ?? ":0",
        EFFECT_SSH_TEST_PASSWORD: password
      }
    })
  )
}

/** Writes an SSH_ASKPASS program that answers every prompt with $EFFECT_SSH_TEST_PASSWORD. */
async function withAskpass<A>(use: (path: string) => Promise<A>): Promise<A> {
  const dir = await mkdtemp(join(tmpdir(), "effect-ssh-askpass-"))
  try {
    const path = join(dir, "askpass")
    await writeFile(path, `#!/bin/sh\nprintf '%s\\n' "$EFFECT_SSH_TEST_PASSWORD"\n`, { mode: 0o700 })
    return await use(path)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const cleanups = new Set<() => void>()

/**
 * Registers a synchronous cleanup (kill a process by pid, remove a dir) for when the test process
 * ends without the test having stopped its resources. Returns the unregister function.
 */
export function cleanupAtExit(cleanup: () => void): () => void {
  if (!exitHooked) hookExit()
  cleanups.add(cleanup)
  return () => {
    cleanups.delete(cleanup)
  }
}

let exitHooked = false

function hookExit(): void {
  exitHooked = true
  const runAll = (): void => {
    for (const cleanup of cleanups) {
      try {
        cleanup()
      } catch {
        // keep cleaning the others
      }
    }
    cleanups.clear()
  }
  process.once("exit", runAll)
  // vitest ends its fork workers with SIGTERM, which skips "exit" handlers
  process.once("SIGTERM", () => {
    runAll()
    process.exit(143)
  })
}

/** Runs `ssh-keygen` with `args`; throws with its output when it fails. */
export function sshKeygen(args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunResult> {
  return runChecked(requirePeer("ssh-keygen"), args, options)
}

export type KeyType = "ed25519" | "ecdsa" | "rsa" | "dsa"

export interface GeneratedKey {
  readonly privatePath: string
  readonly publicPath: string
  /** The `.pub` line: `type base64 comment`. */
  readonly publicLine: string
  /** `SHA256:...` as ssh-keygen prints it. */
  readonly fingerprint: string
}

/** Generates an unencrypted (unless `passphrase`) OpenSSH key pair at `path` and `path.pub`. */
export async function generateKey(
  path: string,
  type: KeyType,
  options: { readonly bits?: number; readonly comment?: string; readonly passphrase?: string } = {}
): Promise<GeneratedKey> {
  await sshKeygen([
    "-q",
    "-t",
    type,
    ...(options.bits !== undefined ? ["-b", String(options.bits)] : []),
    "-N",
    options.passphrase ?? "",
    "-C",
    options.comment ?? `effect-ssh-test-${type}`,
    "-f",
    path
  ])
  const publicLine = (await readFile(`${path}.pub`, "utf8")).trim()
  return { privatePath: path, publicPath: `${path}.pub`, publicLine, fingerprint: await fingerprintOf(`${path}.pub`) }
}

/** SHA256 fingerprint (`SHA256:...`) of a public or private key file. */
export async function fingerprintOf(path: string): Promise<string> {
  const { stdout } = await sshKeygen(["-l", "-E", "sha256", "-f", path])
  const fingerprint = stdout.split(" ")[1]
  if (fingerprint === undefined || !fingerprint.startsWith("SHA256:")) {
    throw new Error(`unexpected ssh-keygen -l output: ${stdout}`)
  }
  return fingerprint
}

export interface Agent {
  readonly socket: string
  readonly pid: number
  /** Adds a private key file with `ssh-add`. */
  readonly add: (privateKeyPath: string) => Promise<void>
  /** Public key lines the agent holds (`ssh-add -L`); empty when it holds none. */
  readonly list: () => Promise<Array<string>>
  /** Environment that points OpenSSH tools at this agent. */
  readonly env: Readonly<Record<string, string>>
  readonly stop: () => Promise<void>
}

/** Starts a private `ssh-agent -D -a <socket>` in a fresh temp dir. */
export async function startAgent(): Promise<Agent> {
  const agentPath = requirePeer("ssh-agent")
  const sshAdd = requirePeer("ssh-add")
  const dir = await mkdtemp(join(tmpdir(), "effect-ssh-agent-"))
  const socket = join(dir, "agent.sock")
  const child = spawn(agentPath, ["-D", "-a", socket], { stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve())
    child.once("error", (error) => {
      output += `spawn error: ${error.message}\n`
      resolve()
    })
  })
  let alive = true
  void exited.then(() => (alive = false))
  const pid = child.pid
  if (pid === undefined) {
    await exited
    await rm(dir, { recursive: true, force: true })
    throw new Error(`ssh-agent did not start: ${output}`)
  }
  const killAtExit = (): void => {
    if (alive) child.kill("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
  }
  const unregister = cleanupAtExit(killAtExit)

  const deadline = Date.now() + 10_000
  while (!existsSync(socket)) {
    if (!alive || Date.now() > deadline) {
      unregister()
      killAtExit()
      throw new Error(`ssh-agent did not create its socket: ${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }

  const env = { SSH_AUTH_SOCK: socket }
  return {
    socket,
    pid,
    env,
    add: async (privateKeyPath) => {
      await runChecked(sshAdd, ["-q", privateKeyPath], { env })
    },
    list: async () => {
      const result = await run(sshAdd, ["-L"], { env })
      // exit 1 means "no identities"
      if (result.exitCode === 1) return []
      if (result.exitCode !== 0) throw new Error(`ssh-add -L failed: ${result.stderr}`)
      return result.stdout.split("\n").filter((line) => line !== "")
    },
    stop: async () => {
      unregister()
      if (alive) {
        child.kill("SIGTERM")
        await exited
      }
      await rm(dir, { recursive: true, force: true })
    }
  }
}
