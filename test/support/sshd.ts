/**
 * A private OpenSSH `sshd` for interop tests: its own temp dir, host keys, config and loopback
 * port, started in the foreground (`-D -e`) and stopped by its own pid.
 *
 * Who logs in: when the tests run as root and the account `effectssh` exists (CI creates it with
 * .ci/setup-test-user.sh), every server lets in `effectssh` only — a real unprivileged account
 * with a known password, so publickey, password and keyboard-interactive all use the same user.
 * As root without that account it falls back to `root`; as a non-root user, sshd can only
 * authenticate the user it runs as, so that user it is (publickey only: no shadow access).
 * `AuthorizedKeysFile` is `<dir>/authorized_keys` for every user; the dir is 0755 and the file
 * 0644 because sshd reads it with the login user's privileges. `StrictModes no` lets root own it.
 */
import { spawn } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { appendFile, chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { createConnection, createServer } from "node:net"
import { tmpdir, userInfo } from "node:os"
import { join } from "node:path"
import { cleanupAtExit, fingerprintOf, run, sshKeygen } from "./openssh.js"
import { isRoot, requirePeer, testUser, testUserExists } from "./peers.js"

export type HostKeySpec = "ed25519" | "ecdsa-256" | "ecdsa-384" | "ecdsa-521" | "rsa-3072" | "dsa"

export interface HostKey {
  /** Key type as it appears on the wire and in the `.pub` line, e.g. `ecdsa-sha2-nistp384`. */
  readonly type: string
  readonly spec: HostKeySpec
  /** Private key file (the `.pub` is next to it). */
  readonly path: string
  /** `type base64 comment`. */
  readonly publicLine: string
  /** `SHA256:...`. */
  readonly fingerprint: string
}

export interface SshdOptions {
  /** Login user the server allows (`AllowUsers`); see the file header for the default. */
  readonly user?: string
  /** Lines written to the `authorized_keys` file. */
  readonly authorizedKeys?: ReadonlyArray<string>
  /** `UsePAM yes`: needed on Linux for keyboard-interactive. Default false. */
  readonly pam?: boolean
  /** Which host keys to generate; default every type this OpenSSH supports. */
  readonly hostKeys?: ReadonlyArray<HostKeySpec>
  /**
   * sshd_config keywords that replace the defaults of the same name (case-insensitive);
   * an array writes the keyword once per value (e.g. several `HostKey`s).
   */
  readonly config?: Readonly<Record<string, string | ReadonlyArray<string>>>
  /** Appended verbatim after everything else, for `Match` blocks. */
  readonly extraConfig?: string
}

export interface Sshd {
  readonly host: "127.0.0.1"
  readonly port: number
  readonly pid: number
  readonly user: string
  readonly dir: string
  readonly configPath: string
  readonly authorizedKeysPath: string
  readonly hostKeys: ReadonlyArray<HostKey>
  /** Everything sshd wrote to stdout/stderr so far (it logs to stderr with `-e`). */
  readonly logs: () => string
  /** Appends a line to authorized_keys; sshd rereads the file on every attempt. */
  readonly addAuthorizedKey: (line: string) => Promise<void>
  /** known_hosts lines (`[127.0.0.1]:port type base64`) for every host key. */
  readonly knownHostsLines: () => Array<string>
  /** Whether the listener process is still alive. */
  readonly running: () => boolean
  /** Kills the listener and its session processes by pid, then removes the dir. */
  readonly stop: () => Promise<void>
}

/** The account tests log in as; see the file header. */
export function defaultLoginUser(): string {
  if (isRoot()) return testUserExists() ? testUser.name : "root"
  return userInfo().username
}

const hostKeyGeneration: Record<HostKeySpec, ReadonlyArray<string>> = {
  ed25519: ["-t", "ed25519"],
  "ecdsa-256": ["-t", "ecdsa", "-b", "256"],
  "ecdsa-384": ["-t", "ecdsa", "-b", "384"],
  "ecdsa-521": ["-t", "ecdsa", "-b", "521"],
  "rsa-3072": ["-t", "rsa", "-b", "3072"],
  dsa: ["-t", "dsa"]
}

export interface OpenSshAlgorithms {
  readonly kex: ReadonlyArray<string>
  readonly ciphers: ReadonlyArray<string>
  readonly macs: ReadonlyArray<string>
  /** Key types (`ssh -Q key`). */
  readonly keys: ReadonlyArray<string>
  /** Signature algorithms usable as host keys, including rsa-sha2-* and certificates. */
  readonly hostKeyAlgorithms: ReadonlyArray<string>
  readonly pubkeyAcceptedAlgorithms: ReadonlyArray<string>
}

let algorithms: Promise<OpenSshAlgorithms> | undefined

/**
 * Every algorithm the installed OpenSSH knows, from `ssh -Q`. The Debian client and server come
 * from one source package, so the client's lists are the server's too.
 */
export function openSshAlgorithms(): Promise<OpenSshAlgorithms> {
  algorithms ??= (async () => {
    const ssh = requirePeer("ssh")
    const query = async (what: string): Promise<Array<string>> => {
      const result = await run(ssh, ["-Q", what])
      if (result.exitCode !== 0) throw new Error(`ssh -Q ${what} failed: ${result.stderr}`)
      return result.stdout.split("\n").filter((line) => line !== "")
    }
    const [kex, ciphers, macs, keys, hostKeyAlgorithms, pubkeyAcceptedAlgorithms] = await Promise.all([
      query("kex"),
      query("cipher"),
      query("mac"),
      query("key"),
      query("HostKeyAlgorithms"),
      query("PubkeyAcceptedAlgorithms")
    ])
    return { kex, ciphers, macs, keys, hostKeyAlgorithms, pubkeyAcceptedAlgorithms }
  })()
  return algorithms
}

/** `config` for `startSshd` that enables every algorithm sshd supports, legacy ones included. */
export async function allAlgorithmsConfig(): Promise<Record<string, string>> {
  const all = await openSshAlgorithms()
  return {
    KexAlgorithms: all.kex.join(","),
    Ciphers: all.ciphers.join(","),
    MACs: all.macs.join(","),
    HostKeyAlgorithms: all.hostKeyAlgorithms.join(","),
    PubkeyAcceptedAlgorithms: all.pubkeyAcceptedAlgorithms.join(",")
  }
}

/** Host key specs this OpenSSH can generate and serve (DSA is gone from recent releases). */
export async function supportedHostKeySpecs(): Promise<Array<HostKeySpec>> {
  const { keys } = await openSshAlgorithms()
  const specs: Array<HostKeySpec> = ["ed25519", "ecdsa-256", "ecdsa-384", "ecdsa-521", "rsa-3072"]
  if (keys.includes("ssh-dss")) specs.push("dsa")
  return specs
}

interface KeyMaterial {
  readonly privateKey: string
  readonly publicLine: string
  readonly fingerprint: string
}

// RSA and DSA generation take seconds on a slow machine: one set of host keys per process.
const generatedHostKeys = new Map<HostKeySpec, Promise<KeyMaterial>>()

function hostKeyMaterial(spec: HostKeySpec): Promise<KeyMaterial> {
  let material = generatedHostKeys.get(spec)
  if (material === undefined) {
    material = (async () => {
      const dir = await mkdtemp(join(tmpdir(), "effect-ssh-hostkey-"))
      try {
        const path = join(dir, "key")
        await sshKeygen(["-q", ...hostKeyGeneration[spec], "-N", "", "-C", `effect-ssh-test-host-${spec}`, "-f", path])
        return {
          privateKey: await readFile(path, "utf8"),
          publicLine: (await readFile(`${path}.pub`, "utf8")).trim(),
          fingerprint: await fingerprintOf(`${path}.pub`)
        }
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })()
    generatedHostKeys.set(spec, material)
  }
  return material
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })
}

function configText(entries: ReadonlyArray<readonly [string, string | ReadonlyArray<string>]>, extra: string): string {
  const lines = entries.flatMap(([key, value]) =>
    (typeof value === "string" ? [value] : value).map((v) => `${key} ${v}`)
  )
  return `${lines.join("\n")}\n${extra === "" ? "" : `${extra}\n`}`
}

/**
 * The defaults, with `overrides` replacing keywords of the same name. sshd takes the first
 * value of a keyword, so overriding must replace rather than append.
 */
function mergeConfig(
  defaults: ReadonlyArray<readonly [string, string | ReadonlyArray<string>]>,
  overrides: Readonly<Record<string, string | ReadonlyArray<string>>>
): Array<readonly [string, string | ReadonlyArray<string>]> {
  const overridden = new Set(Object.keys(overrides).map((key) => key.toLowerCase()))
  return [...defaults.filter(([key]) => !overridden.has(key.toLowerCase())), ...Object.entries(overrides)]
}

/** Pids of every live descendant of `pid`, read from /proc (Linux only; empty elsewhere). */
function descendantsOf(pid: number): Array<number> {
  const children = new Map<number, Array<number>>()
  let entries: Array<string>
  try {
    entries = readdirSync("/proc")
  } catch {
    return []
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      // the command name may contain spaces and parentheses: fields resume after the last ")"
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      const list = children.get(ppid) ?? []
      list.push(Number(entry))
      children.set(ppid, list)
    } catch {
      // exited while we were reading
    }
  }
  const result: Array<number> = []
  const queue = [pid]
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      result.push(child)
      queue.push(child)
    }
  }
  return result
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

const MAX_PORT_ATTEMPTS = 5

/** Starts a private sshd on a free loopback port; resolves once it accepts connections. */
export async function startSshd(options: SshdOptions = {}): Promise<Sshd> {
  const sshdPath = requirePeer("sshd")
  if (isRoot()) {
    // sshd's privilege-separation chroot; normally made by the init script, absent in containers
    mkdirSync("/run/sshd", { recursive: true, mode: 0o755 })
  }
  const user = options.user ?? defaultLoginUser()
  const specs = options.hostKeys ?? (await supportedHostKeySpecs())
  const materials = await Promise.all(specs.map(hostKeyMaterial))

  const dir = await mkdtemp(join(tmpdir(), "effect-ssh-sshd-"))
  try {
    await chmod(dir, 0o755)
    const hostKeys: Array<HostKey> = []
    for (const [index, spec] of specs.entries()) {
      const material = materials[index]!
      const path = join(dir, `ssh_host_${spec}_key`)
      await writeFile(path, material.privateKey, { mode: 0o600 })
      await writeFile(`${path}.pub`, `${material.publicLine}\n`, { mode: 0o644 })
      hostKeys.push({
        type: material.publicLine.split(" ")[0]!,
        spec,
        path,
        publicLine: material.publicLine,
        fingerprint: material.fingerprint
      })
    }
    const authorizedKeysPath = join(dir, "authorized_keys")
    const authorizedKeys = options.authorizedKeys ?? []
    await writeFile(authorizedKeysPath, authorizedKeys.map((line) => `${line}\n`).join(""), { mode: 0o644 })
    await chmod(authorizedKeysPath, 0o644)
    const configPath = join(dir, "sshd_config")
    const hasDsa = specs.includes("dsa")

    for (let attempt = 1; ; attempt++) {
      const port = await freePort()
      const defaults: Array<readonly [string, string | ReadonlyArray<string>]> = [
        ["ListenAddress", "127.0.0.1"],
        ["Port", String(port)],
        ["HostKey", hostKeys.map((key) => key.path)],
        ["PidFile", join(dir, "sshd.pid")],
        ["AuthorizedKeysFile", authorizedKeysPath],
        ["AllowUsers", user],
        ["UsePAM", options.pam === true ? "yes" : "no"],
        ["StrictModes", "no"],
        ["PubkeyAuthentication", "yes"],
        ["PasswordAuthentication", "yes"],
        ["KbdInteractiveAuthentication", "yes"],
        ["PermitRootLogin", "yes"],
        ["PermitEmptyPasswords", "no"],
        ["LogLevel", "VERBOSE"],
        ["Subsystem", "sftp internal-sftp"],
        ["PrintMotd", "no"],
        ["PrintLastLog", "no"],
        ["UseDNS", "no"],
        // OpenSSH 9.x still loads DSA keys but no longer offers or accepts ssh-dss by default
        ...(hasDsa
          ? [
              ["HostKeyAlgorithms", "+ssh-dss"] as const,
              ["PubkeyAcceptedAlgorithms", "+ssh-dss"] as const
            ]
          : [])
      ]
      await writeFile(configPath, configText(mergeConfig(defaults, options.config ?? {}), options.extraConfig ?? ""))

      const started = await launch(sshdPath, configPath, port)
      if (started.ok) {
        const { child, output, exited } = started
        const pid = child.pid!
        let alive = true
        void exited.then(() => (alive = false))
        const killAtExit = (): void => {
          for (const descendant of descendantsOf(pid)) killQuietly(descendant, "SIGKILL")
          if (alive) killQuietly(pid, "SIGKILL")
          rmSync(dir, { recursive: true, force: true })
        }
        const unregister = cleanupAtExit(killAtExit)
        return {
          host: "127.0.0.1",
          port,
          pid,
          user,
          dir,
          configPath,
          authorizedKeysPath,
          hostKeys,
          logs: () => output.join(""),
          addAuthorizedKey: (line) => appendFile(authorizedKeysPath, `${line}\n`),
          knownHostsLines: () =>
            hostKeys.map((key) => `[127.0.0.1]:${port} ${key.publicLine.split(" ").slice(0, 2).join(" ")}`),
          running: () => alive,
          stop: async () => {
            unregister()
            // collected before the listener dies, while session processes are still its children
            const sessions = descendantsOf(pid)
            if (alive) {
              killQuietly(pid, "SIGTERM")
              const timer = setTimeout(() => killQuietly(pid, "SIGKILL"), 5_000)
              await exited
              clearTimeout(timer)
            }
            for (const session of sessions) killQuietly(session, "SIGKILL")
            await rm(dir, { recursive: true, force: true })
          }
        }
      }
      const portTaken = /Address already in use|Cannot bind any address/i.test(started.output)
      if (!portTaken || attempt >= MAX_PORT_ATTEMPTS) {
        throw new Error(
          `sshd failed to start (exit ${started.exitCode ?? "?"}, attempt ${attempt}):\n${started.output}\n--- sshd_config ---\n${await readFile(configPath, "utf8")}`
        )
      }
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

type Launch =
  | {
      readonly ok: true
      readonly child: ReturnType<typeof spawn>
      readonly output: Array<string>
      readonly exited: Promise<void>
    }
  | { readonly ok: false; readonly output: string; readonly exitCode: number | null }

/** Spawns sshd and waits for "Server listening" plus a successful connect, or for its death. */
async function launch(sshdPath: string, configPath: string, port: number): Promise<Launch> {
  const child = spawn(sshdPath, ["-D", "-e", "-f", configPath], { stdio: ["ignore", "pipe", "pipe"] })
  const output: Array<string> = []
  const record = (chunk: Buffer): void => {
    output.push(chunk.toString("utf8"))
  }
  child.stdout!.on("data", record)
  child.stderr!.on("data", record)
  let exitCode: number | null | undefined
  const exited = new Promise<void>((resolve) => {
    child.once("exit", (code) => {
      exitCode = code
      resolve()
    })
    child.once("error", (error) => {
      output.push(`spawn error: ${error.message}\n`)
      exitCode = null
      resolve()
    })
  })

  const deadline = Date.now() + 15_000
  // the log line proves *our* sshd bound the port; the connect proves it accepts
  while (exitCode === undefined && Date.now() < deadline) {
    if (output.join("").includes(`Server listening on 127.0.0.1 port ${port}`) && (await canConnect(port))) {
      return { ok: true, child, output, exited }
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 25))])
  }
  if (exitCode === undefined) {
    killQuietly(child.pid!, "SIGKILL")
    await exited
    output.push("\n(timed out waiting for sshd to listen)\n")
  }
  return { ok: false, output: output.join(""), exitCode: exitCode ?? null }
}
