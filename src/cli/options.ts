import { existsSync, readFileSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { KeyError } from "../protocol/keys/errors.js"
import { parsePrivateKey } from "../protocol/keys/privateKey.js"
import type { SshPublicKey } from "../protocol/keys/publicKey.js"
import { parsePublicKey } from "../protocol/keys/publicKeyFile.js"
import * as KnownHosts from "../KnownHosts.js"
import type { AlgorithmChoice, AlgorithmOptions, Category } from "../protocol/transport/algorithms.js"
import * as SshAuth from "../SshAuth.js"
import type { ConnectOptions } from "../SshClient.js"
import { knownHostsVerifier } from "./hostVerification.js"

/** A command-line mistake: printed with the usage, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError"
}

export interface ConnectionArgs {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly identityFiles: ReadonlyArray<string>
  readonly options: ReadonlyMap<string, string>
  readonly verbose: boolean
  /** What follows the destination. */
  readonly rest: ReadonlyArray<string>
}

/** The `-o` names we understand, as OpenSSH spells them (matched case-insensitively). */
const KNOWN_OPTIONS = ["KexAlgorithms", "Ciphers", "MACs", "HostKeyAlgorithms", "StrictHostKeyChecking", "UserKnownHostsFile", "HashKnownHosts", "BatchMode", "Port", "User", "IdentityFile", "CertificateFile", "ConnectTimeout"]

/** Parses `[-p PORT] [-l USER] [-i KEYFILE] [-o Name=Value ...] [-v] [user@]host ...`. */
export function parseConnectionArgs(argv: ReadonlyArray<string>, extraFlags: ReadonlyArray<string> = []): ConnectionArgs & { readonly flags: ReadonlySet<string> } {
  let port: number | undefined
  let user: string | undefined
  const identityFiles: string[] = []
  const options = new Map<string, string>()
  const flags = new Set<string>()
  let verbose = false
  let i = 0
  const value = (flag: string) => {
    const v = argv[++i]
    if (v === undefined) throw new UsageError(`${flag} needs a value`)
    return v
  }
  for (; i < argv.length; i++) {
    const a = argv[i]!
    if (a === "--") {
      i++
      break
    }
    if (!a.startsWith("-") || a === "-") break
    if (a === "-p") port = parsePort(value(a))
    else if (a === "-l") user = value(a)
    else if (a === "-i") identityFiles.push(value(a))
    else if (a === "-v") verbose = true
    else if (a === "-o") {
      const [name, v] = splitOption(value(a))
      options.set(name, v)
    } else if (extraFlags.includes(a)) flags.add(a)
    else throw new UsageError(`unknown option ${a}`)
  }
  const destination = argv[i++]
  if (destination === undefined) throw new UsageError("no destination host given")
  let host = destination
  const at = destination.lastIndexOf("@")
  if (at >= 0) {
    user ??= destination.slice(0, at)
    host = destination.slice(at + 1)
  }
  if (options.has("port")) port ??= parsePort(options.get("port")!)
  if (options.has("user")) user ??= options.get("user")
  if (options.has("identityfile")) identityFiles.push(expandHome(options.get("identityfile")!))
  return {
    host,
    port: port ?? 22,
    user: user ?? process.env.USER ?? "root",
    identityFiles,
    options,
    verbose,
    flags,
    rest: argv.slice(i)
  }
}

function parsePort(s: string): number {
  const n = Number(s)
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`bad port ${s}`)
  return n
}

function splitOption(s: string): [string, string] {
  const m = /^([A-Za-z]+)\s*[= ]\s*(.*)$/.exec(s)
  if (!m) throw new UsageError(`bad -o option "${s}": expected Name=Value`)
  const name = m[1]!
  if (!KNOWN_OPTIONS.some((k) => k.toLowerCase() === name.toLowerCase())) {
    throw new UsageError(`unsupported -o option ${name}; supported: ${KNOWN_OPTIONS.join(", ")}`)
  }
  return [name.toLowerCase(), m[2]!]
}

export function expandHome(path: string): string {
  return path === "~" ? homedir() : path.startsWith("~/") ? join(homedir(), path.slice(2)) : path
}

/**
 * OpenSSH's list syntax: `a,b` exact, `+a,b` appended to the defaults, `-a,b` removed
 * (wildcards allowed), `^a,b` prepended.
 */
export function algorithmChoice(value: string): AlgorithmChoice {
  const list = (s: string) => s.split(",").filter((x) => x !== "")
  const wild = (p: string): string | RegExp =>
    /[*?]/.test(p) ? new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`) : p
  switch (value[0]) {
    case "+":
      return { append: list(value.slice(1)) }
    case "-":
      return { remove: list(value.slice(1)).map(wild) }
    case "^":
      return { prepend: list(value.slice(1)) }
    default:
      return list(value)
  }
}

const algorithmOptionNames: Record<string, Category> = {
  kexalgorithms: "kex",
  ciphers: "cipher",
  macs: "mac",
  hostkeyalgorithms: "hostKey"
}

/** Turns parsed arguments into client options: algorithms, auth methods and host verification. */
export function connectOptions(args: ConnectionArgs): ConnectOptions {
  const algorithms: { -readonly [K in Category]?: AlgorithmChoice } = {}
  for (const [name, category] of Object.entries(algorithmOptionNames)) {
    const v = args.options.get(name)
    if (v !== undefined) algorithms[category] = algorithmChoice(v)
  }
  const knownHostsFile = expandHome(args.options.get("userknownhostsfile") ?? "~/.ssh/known_hosts")
  // as ssh: certificate host keys first when a @cert-authority line covers the host
  const certificateFirst = KnownHosts.hostKeyAlgorithms(knownHostsFile, args.host, args.port)
  if (algorithms.hostKey === undefined && certificateFirst !== undefined) algorithms.hostKey = certificateFirst
  const batch = args.options.get("batchmode")?.toLowerCase() === "yes"
  const auth: SshAuth.SshAuthMethod[] = []
  for (const file of identityFiles(args)) {
    const key = loadKey(file)
    const certificate = loadCertificate(args.options.get("certificatefile") ?? `${file}-cert.pub`, args.options.has("certificatefile"))
    if (certificate !== undefined) {
      try {
        auth.push(SshAuth.certificate(key, certificate))
      } catch (e) {
        process.stderr.write(`effect-ssh: ignoring the certificate for ${file}: ${(e as Error).message}\n`)
      }
    }
    auth.push(SshAuth.privateKey(key))
  }
  if (process.env.SSH_AUTH_SOCK) auth.push(SshAuth.agent(process.env.SSH_AUTH_SOCK))
  const password = process.env.SSH_PASSWORD
  if (password !== undefined) {
    auth.push(SshAuth.password(Redacted.make(password)))
    auth.push(SshAuth.keyboardInteractive((req) => Effect.succeed(req.prompts.map(() => password))))
  }
  const timeout = args.options.get("connecttimeout")
  return {
    host: args.host,
    port: args.port,
    username: args.user,
    auth,
    algorithms: algorithms as AlgorithmOptions,
    hostVerifier: knownHostsVerifier({
      file: knownHostsFile,
      strict: (args.options.get("stricthostkeychecking") ?? "ask").toLowerCase(),
      interactive: !batch && process.stdin.isTTY === true,
      hash: args.options.get("hashknownhosts")?.toLowerCase() === "yes"
    }),
    ...(timeout !== undefined ? { readyTimeout: `${Number(timeout)} seconds` as const } : {})
  }
}

function identityFiles(args: ConnectionArgs): ReadonlyArray<string> {
  if (args.identityFiles.length > 0) return args.identityFiles
  return ["id_ed25519", "id_ecdsa", "id_rsa"].map((f) => join(homedir(), ".ssh", f)).filter((f) => existsSync(f))
}

/** A user certificate next to the identity (`id_ed25519-cert.pub`), as ssh loads it; an explicit CertificateFile must exist. */
function loadCertificate(file: string, required: boolean): SshPublicKey | undefined {
  const path = expandHome(file)
  if (!existsSync(path)) {
    if (required) throw new UsageError(`certificate file ${file} does not exist`)
    return undefined
  }
  try {
    const key = parsePublicKey(readFileSync(path))
    if (key.certificate === undefined) throw new KeyError("unsupported-key-type", "not a certificate")
    return key
  } catch (e) {
    throw new UsageError(`cannot use certificate ${file}: ${(e as Error).message}`)
  }
}

function loadKey(file: string) {
  let data: Buffer
  try {
    data = readFileSync(file)
  } catch (e) {
    throw new UsageError(`cannot read identity file ${file}: ${(e as Error).message}`)
  }
  try {
    return parsePrivateKey(data, process.env.SSH_PASSPHRASE)
  } catch (e) {
    if (e instanceof KeyError && e.reason === "passphrase-required") {
      throw new UsageError(`${file} is encrypted: set SSH_PASSPHRASE`)
    }
    throw new UsageError(`cannot use identity file ${file}: ${(e as Error).message}`)
  }
}
