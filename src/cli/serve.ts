import { createHash, timingSafeEqual } from "node:crypto"
import { readFileSync, statSync } from "node:fs"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { execSession, ptySupported } from "../node/ExecSession.js"
import { generatePrivateKey, parsePrivateKey } from "../protocol/keys/privateKey.js"
import type { SshPrivateKey } from "../protocol/keys/privateKey.js"
import { parseAuthorizedKeys } from "../protocol/keys/authorizedKeys.js"
import type { AuthorizedKeyEntry } from "../protocol/keys/authorizedKeys.js"
import type { SshCertificate } from "../protocol/keys/certificate.js"
import { fingerprint, parsePublicKeyLine } from "../protocol/keys/publicKey.js"
import type { SshPublicKey } from "../protocol/keys/publicKey.js"
import * as SftpServer from "../SftpServer.js"
import type { SftpFileSystem } from "../SftpServer.js"
import * as SshServer from "../SshServer.js"
import type { AuthContext, AuthDecision } from "../SshServer.js"

export const serveUsage =
  "effect-ssh serve [--listen 127.0.0.1:2222] [--host-key FILE ...] [--host-certificate FILE ...] [--authorized-keys FILE] [--trusted-user-ca-keys FILE] [--password-env VAR] [--exec] [--root DIR]"

export interface ServeIO {
  readonly out: (line: string) => void
  readonly err: (line: string) => void
  /** Resolves when the server should stop; default: SIGINT or SIGTERM. */
  readonly until?: Promise<void>
}

const processIO: ServeIO = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`)
}

interface ServeArgs {
  readonly host: string
  readonly port: number
  readonly hostKeyFiles: ReadonlyArray<string>
  readonly hostCertificateFiles: ReadonlyArray<string>
  readonly authorizedKeys: string | undefined
  readonly trustedUserCAKeys: string | undefined
  readonly passwordEnv: string | undefined
  readonly exec: boolean
  /** Served over SFTP (subsystem "sftp") as the client's "/". */
  readonly root: string | undefined
}

class ServeError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message)
  }
}

/**
 * `effect-ssh serve`: a small real SSH server. Prints `listening on HOST:PORT` as its first
 * line, runs until SIGINT/SIGTERM, and returns the exit status (0 after a clean stop, 1 when
 * it cannot start, 2 for a usage error).
 */
export async function serve(argv: ReadonlyArray<string>, io: ServeIO = processIO): Promise<number> {
  let args: ServeArgs
  let hostKeys: Array<{ key: SshPrivateKey; generated: boolean }>
  let hostCertificates: ReadonlyArray<SshCertificate>
  let authenticate: (ctx: AuthContext) => Effect.Effect<AuthDecision, SshServer.AuthCancelled>
  let methods: string[]
  let files: SftpFileSystem | undefined
  try {
    args = parseServeArgs(argv)
    if (args.authorizedKeys === undefined && args.trustedUserCAKeys === undefined && args.passwordEnv === undefined) {
      throw new ServeError("no authentication configured: give --authorized-keys FILE, --trusted-user-ca-keys FILE and/or --password-env VAR", 2)
    }
    if (args.hostCertificateFiles.length > 0 && args.hostKeyFiles.length === 0) {
      throw new ServeError("--host-certificate needs the certified key given with --host-key", 2)
    }
    hostKeys = args.hostKeyFiles.length > 0 ? args.hostKeyFiles.map((f) => ({ key: readHostKey(f), generated: false })) : [{ key: generatePrivateKey("ed25519"), generated: true }]
    hostCertificates = args.hostCertificateFiles.map(readHostCertificate)
    const publicKey =
      args.authorizedKeys === undefined && args.trustedUserCAKeys === undefined
        ? undefined
        : SshServer.authorizedKeysAuthenticator({
            ...(args.authorizedKeys !== undefined ? { authorizedKeys: readAuthorizedKeys(args.authorizedKeys) } : {}),
            ...(args.trustedUserCAKeys !== undefined ? { trustedUserCAKeys: readKeyList(args.trustedUserCAKeys, "trusted user CA keys") } : {})
          })
    const password = args.passwordEnv === undefined ? undefined : readPassword(args.passwordEnv)
    authenticate = authenticator(publicKey, password)
    files = args.root === undefined ? undefined : serveRoot(args.root)
    methods = [...(publicKey ? ["publickey"] : []), ...(password ? ["password", "keyboard-interactive"] : [])]
  } catch (e) {
    const status = e instanceof ServeError ? e.status : 1
    io.err(`effect-ssh serve: ${e instanceof Error ? e.message : String(e)}`)
    if (status === 2) io.err(`usage: ${serveUsage}`)
    return status
  }

  const until = io.until ?? stopSignal()
  const program = Effect.gen(function* () {
    const server = yield* SshServer.make({
      listen: { host: args.host, port: args.port },
      hostKeys: hostKeys.map((k) => k.key),
      hostCertificates,
      authMethods: methods,
      authenticate,
      ...onSession(args.exec, files)
    })
    const { host, port } = server.address!
    io.out(`listening on ${host.includes(":") ? `[${host}]` : host}:${port}`)
    server.hostKeys.forEach((k, i) => io.out(`host key ${k.type} ${k.fingerprint}${hostKeys[i]!.generated ? " (generated in memory, not saved)" : ""}`))
    for (const k of server.hostKeys) {
      if (k.certificate) io.out(`host certificate ${k.certificate.type} ${JSON.stringify(k.certificate.keyId)} for ${k.fingerprint}, CA ${fingerprint(k.certificate.signatureKey)}`)
    }
    io.out(`auth: ${methods.join(", ")}`)
    io.out(
      args.exec
        ? `exec: commands and shells run as ${process.env.USER ?? "this user"}${ptySupported() ? "" : " (no pty: util-linux script not found)"}`
        : files
          ? "exec: disabled (sessions serve sftp only; use --exec)"
          : "exec: disabled (sessions are refused; use --exec)"
    )
    if (files) io.out(`sftp: serving ${args.root} as /`)
    yield* Effect.promise(() => until)
  })
  return Effect.runPromise(
    Effect.scoped(program).pipe(
      Effect.as(0),
      Effect.catchAll((e) =>
        Effect.sync(() => {
          io.err(`effect-ssh serve: ${e.message}`)
          return 1
        })
      )
    )
  )
}

function parseServeArgs(argv: ReadonlyArray<string>): ServeArgs {
  let listen = "127.0.0.1:2222"
  const hostKeyFiles: string[] = []
  const hostCertificateFiles: string[] = []
  let authorizedKeys: string | undefined
  let trustedUserCAKeys: string | undefined
  let passwordEnv: string | undefined
  let exec = false
  let root: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const value = () => {
      const v = argv[++i]
      if (v === undefined) throw new ServeError(`${a} needs a value`, 2)
      return v
    }
    if (a === "--listen") listen = value()
    else if (a === "--host-key") hostKeyFiles.push(value())
    else if (a === "--host-certificate") hostCertificateFiles.push(value())
    else if (a === "--authorized-keys") authorizedKeys = value()
    else if (a === "--trusted-user-ca-keys") trustedUserCAKeys = value()
    else if (a === "--password-env") passwordEnv = value()
    else if (a === "--exec") exec = true
    else if (a === "--root") root = value()
    else throw new ServeError(`unknown argument ${a}`, 2)
  }
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen) ?? /^()()(\d+)$/.exec(listen)
  const port = match ? Number(match[3]) : NaN
  if (!match || !Number.isInteger(port) || port > 65535) throw new ServeError(`--listen ${listen}: expected HOST:PORT`, 2)
  return { host: match[1] || match[2] || "127.0.0.1", port, hostKeyFiles, hostCertificateFiles, authorizedKeys, trustedUserCAKeys, passwordEnv, exec, root }
}

/** The session handler: commands (with sftp as a subsystem when a root is served), sftp only, or none. */
function onSession(exec: boolean, files: SftpFileSystem | undefined): Pick<SshServer.ServerOptions, "onSession"> {
  if (exec) return { onSession: execSession(files ? { subsystems: { sftp: SftpServer.subsystem(files) } } : {}) }
  return files ? { onSession: SftpServer.sessionHandler(files) } : {}
}

function serveRoot(dir: string): SftpFileSystem {
  let isDirectory: boolean
  try {
    isDirectory = statSync(dir).isDirectory()
  } catch (e) {
    throw new ServeError(`--root ${dir}: ${e instanceof Error ? e.message : String(e)}`, 1)
  }
  if (!isDirectory) throw new ServeError(`--root ${dir}: not a directory`, 1)
  return SftpServer.nodeFileSystem(dir)
}

function readHostKey(file: string): SshPrivateKey {
  try {
    return parsePrivateKey(readFileSync(file))
  } catch (e) {
    throw new ServeError(`host key ${file}: ${e instanceof Error ? e.message : String(e)}`, 1)
  }
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8")
  } catch (e) {
    throw new ServeError(`${what} ${file}: ${e instanceof Error ? e.message : String(e)}`, 1)
  }
}

/** authorized_keys with its options; a bad line stops the server rather than being skipped unseen. */
function readAuthorizedKeys(file: string): ReadonlyArray<AuthorizedKeyEntry> {
  const { entries, errors } = parseAuthorizedKeys(readText(file, "authorized keys"))
  const [first] = errors
  if (first !== undefined) throw new ServeError(`${file} line ${first.line}: ${first.message}`, 1)
  if (entries.length === 0) throw new ServeError(`${file} holds no keys`, 1)
  return entries
}

/** A file of `type base64 [comment]` lines, as sshd's TrustedUserCAKeys. */
function readKeyList(file: string, what: string): ReadonlyArray<SshPublicKey> {
  const keys: SshPublicKey[] = []
  readText(file, what)
    .split(/\r?\n/)
    .forEach((line, i) => {
      if (line.trim() === "" || line.trimStart().startsWith("#")) return
      try {
        keys.push(parsePublicKeyLine(line))
      } catch (e) {
        throw new ServeError(`${file} line ${i + 1}: ${e instanceof Error ? e.message : String(e)}`, 1)
      }
    })
  if (keys.length === 0) throw new ServeError(`${file} holds no keys`, 1)
  return keys
}

function readHostCertificate(file: string): SshCertificate {
  let key: SshPublicKey
  try {
    key = parsePublicKeyLine(readText(file, "host certificate").trim())
  } catch (e) {
    if (e instanceof ServeError) throw e
    throw new ServeError(`host certificate ${file}: ${e instanceof Error ? e.message : String(e)}`, 1)
  }
  if (key.certificate === undefined) throw new ServeError(`host certificate ${file}: a ${key.type} key, not a certificate`, 1)
  return key.certificate
}

function readPassword(variable: string): Redacted.Redacted<string> {
  const value = process.env[variable]
  if (value === undefined || value === "") throw new ServeError(`--password-env ${variable}: the variable is not set or empty`, 1)
  return Redacted.make(value)
}

/** Compares digests so the time taken says nothing about the password, not even its length. */
function samePassword(given: string, expected: Redacted.Redacted<string>): boolean {
  const digest = (s: string) => createHash("sha256").update(s, "utf8").digest()
  return timingSafeEqual(digest(given), digest(Redacted.value(expected)))
}

function authenticator(
  publicKey: ((ctx: AuthContext) => Effect.Effect<AuthDecision>) | undefined,
  password: Redacted.Redacted<string> | undefined
) {
  const { accept, reject } = SshServer.AuthDecision
  return (ctx: AuthContext): Effect.Effect<AuthDecision, SshServer.AuthCancelled> =>
    Effect.gen(function* () {
      switch (ctx.method) {
        case "publickey":
          return publicKey ? yield* publicKey(ctx) : reject()
        case "password":
          return password && samePassword(Redacted.value(ctx.password), password) ? accept : reject()
        case "keyboard-interactive": {
          if (!password) return reject()
          const [answer] = yield* ctx.prompt([{ prompt: "Password: ", echo: false }])
          return answer !== undefined && samePassword(answer, password) ? accept : reject()
        }
        default:
          return reject()
      }
    })
}

function stopSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop)
      process.off("SIGTERM", stop)
      resolve()
    }
    process.on("SIGINT", stop)
    process.on("SIGTERM", stop)
  })
}
