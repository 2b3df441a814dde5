/**
 * A session handler that runs exec, shell and subsystem requests as child processes of the
 * serving user, the way sshd does for a logged-in user (without changing user).
 */
import { spawn, spawnSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { readFileSync, readlinkSync } from "node:fs"
import { constants, homedir, userInfo } from "node:os"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Scope from "effect/Scope"
import type { PtyRequest, ServerProcess, ServerSession, WindowChange } from "../SshServer.js"

export interface ExecSessionOptions {
  /** The shell for `shell` requests (default: the user's login shell, else /bin/sh). Commands run with /bin/sh -c. */
  readonly shell?: string
  /** Working directory (default: the home directory). */
  readonly cwd?: string
  /** Variables added to the minimal login environment (PATH, HOME, USER, LOGNAME, SHELL). */
  readonly env?: Readonly<Record<string, string>>
  /**
   * Subsystems by name: a command line run with /bin/sh -c (e.g. `{ sftp: "/usr/lib/openssh/sftp-server" }`),
   * or a handler served in-process (e.g. `{ sftp: SftpServer.subsystem(SftpServer.nodeFileSystem(dir)) }`).
   */
  readonly subsystems?: Readonly<Record<string, string | SubsystemHandler>>
}

/** Serves an accepted subsystem in-process; the channel is the handler's until it returns. */
export type SubsystemHandler = (process: ServerProcess) => Effect.Effect<void>

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

let scriptAvailable: boolean | undefined
/**
 * Whether ptys can be served. Node has no pty API, so a pty session runs under util-linux
 * `script`, which allocates one; without it pty requests are refused.
 */
export function ptySupported(): boolean {
  scriptAvailable ??= process.platform === "linux" && spawnSync("script", ["--version"], { stdio: "ignore" }).status === 0
  return scriptAvailable
}

/** Quotes a string for a POSIX shell command line. */
const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * The handler: give it to `SshServer.make({ onSession: execSession() })`.
 *
 * Supported: pty-req (through `script`; the size is applied, window-change too; terminal modes
 * other than the size are not), env, exec, shell, subsystem (from `subsystems`: a command or an
 * in-process handler), signal.
 * Refused: x11-req, auth-agent-req@openssh.com and anything else.
 * The session's restrictions apply: their `environment` (authorized_keys `environment=`, set
 * after the client's env requests, as sshd with PermitUserEnvironment) and, for a forced
 * command, SSH_ORIGINAL_COMMAND.
 */
export const execSession =
  (options: ExecSessionOptions = {}) =>
  (session: ServerSession): Effect.Effect<void, never, Scope.Scope> =>
    Effect.gen(function* () {
      const user = userInfo()
      const loginShell = options.shell ?? (user.shell || "/bin/sh")
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
        HOME: user.homedir || homedir(),
        USER: user.username,
        LOGNAME: user.username,
        SHELL: loginShell,
        ...(process.env.LANG ? { LANG: process.env.LANG } : {}),
        ...(session.connection.remoteAddress ? { SSH_CLIENT: `${session.connection.remoteAddress} ${session.connection.remotePort ?? 0} 0` } : {}),
        ...options.env
      }
      let pty: PtyRequest | undefined
      let child: ChildProcess | undefined
      let started = false

      const start = (proc: ServerProcess, command: string | undefined, originalCommand: string | undefined) =>
        Effect.gen(function* () {
          const childEnv = {
            ...env,
            ...(pty ? { TERM: pty.term || "dumb" } : {}),
            ...Object.fromEntries(session.restrictions.environment.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)])),
            ...(originalCommand !== undefined ? { SSH_ORIGINAL_COMMAND: originalCommand } : {})
          }
          const spawned = launch(command, loginShell, pty, childEnv, options.cwd ?? env.HOME!)
          child = spawned
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              // the channel closed under a running session: hang up on all of it, as sshd does
              if (spawned.exitCode === null && spawned.signalCode === null) hangUp(spawned, pty !== undefined)
            })
          )
          yield* Effect.forkScoped(pumpInput(proc, spawned))
          const ended = Effect.async<{ code: number | null; signal: NodeJS.Signals | null }>((resume) => {
            spawned.once("exit", (code, signal) => resume(Effect.succeed({ code, signal })))
            spawned.once("error", () => resume(Effect.succeed({ code: 127, signal: null })))
          })
          const [status] = yield* Effect.all(
            [ended, pumpOutput(spawned.stdout, proc.write), pumpOutput(spawned.stderr, proc.writeStderr)],
            { concurrency: "unbounded" }
          )
          if (status.signal) yield* proc.exitSignal(status.signal.replace(/^SIG/, ""))
          else yield* proc.exit(status.code ?? 1)
        })

      yield* session.forEachRequest((request) => {
        switch (request._tag) {
          case "Pty":
            if (!ptySupported() || started) return request.reject
            pty = request.pty
            return request.accept.pipe(Effect.ignore)
          case "Env":
            if (!ENV_NAME.test(request.name) || started) return request.reject
            env[request.name] = request.value
            return request.accept.pipe(Effect.ignore)
          case "WindowChange":
            if (pty && child) resizePty(child, request.size)
            return Effect.void
          case "Signal": {
            const name = `SIG${request.signal}`
            if (child && name in constants.signals) signalChild(child, name as NodeJS.Signals, pty !== undefined)
            return Effect.void
          }
          case "Exec":
          case "Shell":
          case "Subsystem": {
            if (started) return request.reject
            const target =
              request._tag === "Exec" ? request.command : request._tag === "Subsystem" ? options.subsystems?.[request.name] : undefined
            if (request._tag === "Subsystem" && target === undefined) return request.reject
            started = true
            const originalCommand = request._tag === "Exec" ? request.originalCommand : undefined
            return request.accept.pipe(
              Effect.flatMap((proc) =>
                Effect.forkScoped(typeof target === "function" ? target(proc) : start(proc, target, originalCommand))
              ),
              Effect.ignore
            )
          }
          default:
            return request.reject
        }
      })
    })

/** Starts the child: `/bin/sh -c command`, or the login shell, under `script` when a pty was requested. */
function launch(command: string | undefined, shell: string, pty: PtyRequest | undefined, env: Record<string, string>, cwd: string): ChildProcess {
  // its own process group, so signals and the final hangup reach everything the session started
  const options = { env, cwd, detached: true, stdio: ["pipe", "pipe", "pipe"] as ["pipe", "pipe", "pipe"] }
  if (!pty) {
    return command === undefined ? spawn(shell, ["-l"], options) : spawn("/bin/sh", ["-c", command], options)
  }
  // script runs its -c argument with $SHELL -c; the size goes first so the program sees it at once
  const size = pty.rows > 0 && pty.cols > 0 ? `stty rows ${pty.rows} cols ${pty.cols} 2>/dev/null; ` : ""
  const inner = command === undefined ? `exec ${shellQuote(shell)} -l` : `exec /bin/sh -c ${shellQuote(command)}`
  return spawn("script", ["-qfec", size + inner, "/dev/null"], { ...options, env: { ...env, SHELL: "/bin/sh" } })
}

/** Copies the client's input into the child's stdin, pausing while the pipe is full; EOF closes it. */
function pumpInput(proc: ServerProcess, child: ChildProcess): Effect.Effect<void> {
  const stdin = child.stdin!
  stdin.on("error", () => {}) // the child may exit without reading: EPIPE is expected
  const write = (chunk: Uint8Array) =>
    Effect.async<void>((resume) => {
      if (stdin.destroyed || stdin.writableEnded) return resume(Effect.void)
      if (stdin.write(chunk)) return resume(Effect.void)
      const done = () => {
        stdin.off("drain", done)
        stdin.off("close", done)
        resume(Effect.void)
      }
      stdin.once("drain", done)
      stdin.once("close", done)
    })
  return Stream.runForEach(proc.input, write).pipe(
    Effect.ignore,
    Effect.ensuring(Effect.sync(() => stdin.end()))
  )
}

/** Copies a child's output to the channel; reading waits for the channel, so a slow client pauses the child. */
function pumpOutput(readable: NodeJS.ReadableStream | null, write: (data: Uint8Array) => Effect.Effect<void, unknown>): Effect.Effect<void> {
  if (!readable) return Effect.void
  return Stream.runForEach(
    Stream.fromAsyncIterable(readable as AsyncIterable<Uint8Array>, (e) => e),
    write
  ).pipe(Effect.ignore)
}

/** The pid of the program `script` runs (its only child), from /proc. */
function ptyProgramPid(script: ChildProcess): number | undefined {
  try {
    const children = readFileSync(`/proc/${script.pid}/task/${script.pid}/children`, "utf8").trim().split(/\s+/)
    const pid = Number(children[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function killGroup(leader: number | undefined, signal: NodeJS.Signals): void {
  if (leader === undefined) return
  try {
    process.kill(-leader, signal)
  } catch {
    // the group is gone already
  }
}

/**
 * A client's signal goes to the session's process group, as sshd's killpg does; under a pty
 * that is the program's group (it leads its own session under script).
 */
function signalChild(child: ChildProcess, signal: NodeJS.Signals, underPty: boolean): void {
  killGroup((underPty ? ptyProgramPid(child) : undefined) ?? child.pid, signal)
}

/** SIGHUP to the program and to script itself: script does not pass a hangup on. */
function hangUp(child: ChildProcess, underPty: boolean): void {
  if (underPty) killGroup(ptyProgramPid(child), "SIGHUP")
  killGroup(child.pid, "SIGHUP")
}

/** Applies a window-change to the pty; the kernel then sends SIGWINCH to the foreground job. */
function resizePty(script: ChildProcess, size: WindowChange): void {
  const program = ptyProgramPid(script)
  if (program === undefined || size.rows === 0 || size.cols === 0) return
  try {
    const tty = readlinkSync(`/proc/${program}/fd/0`)
    if (!tty.startsWith("/dev/pts/")) return
    spawn("stty", ["-F", tty, "rows", String(size.rows), "cols", String(size.cols)], { stdio: "ignore" }).on("error", () => {})
  } catch {
    // the program has exited
  }
}
