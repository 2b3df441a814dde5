import * as net from "node:net"
import type { Duplex } from "node:stream"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type { ChannelState } from "./internal/channelState.js"
import { adoptAccepted, Driver } from "./internal/driver.js"
import type { DriverHandlers, SocketReader } from "./internal/driver.js"
import { keepalive } from "./internal/keepalive.js"
import type { Prompt } from "./protocol/auth/client.js"
import type { AuthRequest, ServerAuthEvent } from "./protocol/auth/server.js"
import type { ConnectionEvent } from "./protocol/connection/connection.js"
import type { EndpointConfig, EndpointEvent } from "./protocol/endpoint.js"
import {
  decodeEnvRequest,
  decodeExecRequest,
  decodePtyRequest,
  decodeSignalRequest,
  decodeSubsystemRequest,
  decodeWindowChange,
  decodeX11Request,
  encodeExitSignal,
  encodeExitStatus
} from "./protocol/connection/requests.js"
import type { PtyRequest, WindowChange, X11Request } from "./protocol/connection/requests.js"
import { certificateAlgorithm, plainAlgorithmOfCertificate } from "./protocol/keys/algorithms.js"
import { authorizeKey, intersectRestrictions, restrictionsOf, withCertificate } from "./protocol/keys/authorizedKeys.js"
import type { AuthorizedKeyEntry, Restrictions } from "./protocol/keys/authorizedKeys.js"
import { checkCertificate } from "./protocol/keys/certificate.js"
import type { SshCertificate } from "./protocol/keys/certificate.js"
import type { SshPrivateKey } from "./protocol/keys/privateKey.js"
import { fingerprint, parsePublicKeyBlob, signatureAlgorithms } from "./protocol/keys/publicKey.js"
import type { SshPublicKey } from "./protocol/keys/publicKey.js"
import { resolveAlgorithms, SUPPORTED } from "./protocol/transport/algorithms.js"
import type { AlgorithmOptions } from "./protocol/transport/algorithms.js"
import type { HostKeySigner, KexSummary } from "./protocol/transport/transport.js"
import { ChannelOpenFailure } from "./protocol/wire/messages.js"
import { DisconnectReason, ProtocolError } from "./protocol/wire/errors.js"
import { concatBytes, message } from "./protocol/wire/writer.js"
import { fromState } from "./SshChannel.js"
import type { SshChannel } from "./SshChannel.js"
import { VERSION } from "./SshClient.js"
import { SshChannelError, SshConnectError, SshKeyError, SshTransportError } from "./SshError.js"

export type { PtyRequest, WindowChange, X11Request } from "./protocol/connection/requests.js"
export type { Prompt } from "./protocol/auth/client.js"
export type { AuthorizedKeyEntry, Restrictions } from "./protocol/keys/authorizedKeys.js"

/** Signature algorithms the core verifies for publickey and hostbased authentication: the `server-sig-algs` we announce. */
export const USER_AUTH_SIGNATURE_ALGORITHMS: ReadonlyArray<string> = [
  "ssh-ed25519",
  "sk-ssh-ed25519@openssh.com",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ecdsa-sha2-nistp256@openssh.com",
  "rsa-sha2-512",
  "rsa-sha2-256",
  "ssh-rsa",
  "ssh-dss"
]

/** What publickey requests may use: the announced algorithms and their certificate forms (PROTOCOL.certkeys). */
const PUBLICKEY_ALGORITHMS: ReadonlyArray<string> = [...USER_AUTH_SIGNATURE_ALGORITHMS, ...USER_AUTH_SIGNATURE_ALGORITHMS.map(certificateAlgorithm)]

/** Everything permitted: what a session may do when the authentication imposed nothing. */
export const UNRESTRICTED: Restrictions = restrictionsOf(undefined)

// ---- authentication ---------------------------------------------------------------------

/** Who is on the other end of one connection. The same object for the connection's lifetime. */
export interface ConnectionInfo {
  /** Unique within this server. */
  readonly id: number
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  /** The client's identification line, e.g. "SSH-2.0-OpenSSH_9.2p1". */
  readonly clientIdentification: () => string
  /** The algorithms of the last key exchange. */
  readonly algorithms: () => KexSummary | undefined
}

interface AuthBase {
  readonly username: string
  readonly connection: ConnectionInfo
  /** Methods that already ended in partial success on this connection (multi-factor). */
  readonly completed: ReadonlyArray<string>
}

/**
 * One authentication request, decoded. Signatures are verified by the server before the
 * handler sees a request: a signed publickey or hostbased request with a bad signature is
 * refused without calling the handler, so the handler only decides whether the key is
 * authorized for the user.
 */
export type AuthContext =
  | (AuthBase & { readonly method: "none" })
  | (AuthBase & {
      readonly method: "password"
      readonly password: Redacted.Redacted<string>
      /** Present when the client answers a password change request. */
      readonly newPassword?: Redacted.Redacted<string>
    })
  | (AuthBase & {
      readonly method: "publickey"
      /** As offered, e.g. `rsa-sha2-512` or `ssh-ed25519-cert-v01@openssh.com`. */
      readonly algorithm: string
      /** The key the client proves it holds; for a certificate, the certified key. */
      readonly key: SshPublicKey
      /**
       * Present when the client offered an OpenSSH user certificate. The server has already
       * checked its CA signature, type, validity window, critical options and source-address,
       * and applies its force-command and permit-* extensions to the session; whether its CA is
       * trusted and its principals fit the user is for the handler to decide
       * (`authorizedKeysAuthenticator` does both).
       */
      readonly certificate?: SshCertificate
      /** True when the client only asks whether the key would be accepted (no signature yet). */
      readonly query: boolean
      /** True when a signature is present and verifies; always true for the requests a handler sees unless `query`. */
      readonly signatureValid: boolean
    })
  | (AuthBase & {
      readonly method: "keyboard-interactive"
      readonly submethods: string
      /** Sends one round of prompts and waits for the answers (RFC 4256). Fails when the client gives up. */
      readonly prompt: (
        prompts: ReadonlyArray<Prompt>,
        options?: { readonly name?: string; readonly instructions?: string }
      ) => Effect.Effect<ReadonlyArray<string>, AuthCancelled>
    })
  | (AuthBase & {
      readonly method: "hostbased"
      readonly algorithm: string
      readonly key: SshPublicKey
      readonly hostname: string
      readonly localUsername: string
      readonly signatureValid: boolean
    })

/** The client abandoned a keyboard-interactive exchange (it sent a new request or left). */
export class AuthCancelled extends Data.TaggedError("AuthCancelled")<{ readonly message: string }> {}

export type AuthDecision =
  | { readonly _tag: "Accept"; readonly restrictions?: Restrictions }
  | {
      readonly _tag: "Reject"
      readonly methods?: ReadonlyArray<string>
      readonly partialSuccess?: boolean
      /** With partial success: what this factor allows; the final session gets what every factor allows. */
      readonly restrictions?: Restrictions
    }
  | { readonly _tag: "PasswordChange"; readonly prompt: string }

export const AuthDecision = {
  /** For publickey: the key is authorized (a query gets PK_OK, a signed request succeeds). */
  accept: { _tag: "Accept" } as AuthDecision,
  /** Accepts with restrictions (authorized_keys options): the server enforces them on the connection's sessions. */
  acceptWith: (restrictions: Restrictions): AuthDecision => ({ _tag: "Accept", restrictions }),
  /** Refuses; `methods` replaces the server's method list in the answer. */
  reject: (options: { readonly methods?: ReadonlyArray<string> } = {}): AuthDecision => ({ _tag: "Reject", ...options }),
  /** This factor passed, more are required: the client continues with one of `methods`. */
  partial: (methods: ReadonlyArray<string>, options: { readonly restrictions?: Restrictions } = {}): AuthDecision => ({
    _tag: "Reject",
    methods,
    partialSuccess: true,
    ...options
  }),
  /** password only: the password is right but expired; the client must send a new one. */
  passwordChange: (prompt: string): AuthDecision => ({ _tag: "PasswordChange", prompt })
}

export interface AuthorizedKeysOptions {
  /** authorized_keys lines, from `parseAuthorizedKeys` (options and `cert-authority` lines included). */
  readonly authorizedKeys?: ReadonlyArray<AuthorizedKeyEntry>
  /** CA keys trusted to certify any user named among a certificate's principals (sshd's TrustedUserCAKeys). */
  readonly trustedUserCAKeys?: ReadonlyArray<SshPublicKey>
  /** Milliseconds since the epoch, for expiry-time and certificate validity; default the Effect Clock. */
  readonly now?: () => number
}

/**
 * A publickey authenticator deciding as sshd does with an authorized_keys file and
 * TrustedUserCAKeys: a listed key, or a certificate whose CA is trusted with the user among its
 * principals (or a `principals=` of its cert-authority line); `from=`, `expiry-time=` and
 * source-address honoured. Accepts with the line's restrictions (command=, no-pty, ...), which
 * the server enforces. Every other method is rejected: combine it with your own handler.
 *
 * @example
 * const keys = SshServer.authorizedKeysAuthenticator({ authorizedKeys: parseAuthorizedKeys(text).entries })
 * SshServer.make({ hostKeys, authenticate: (ctx) => ctx.method === "publickey" ? keys(ctx) : checkPassword(ctx) })
 */
export const authorizedKeysAuthenticator = (options: AuthorizedKeysOptions) => {
  const entries = options.authorizedKeys ?? []
  const trustedUserCAKeys = (options.trustedUserCAKeys ?? []).map((k) => k.blob)
  const now = options.now ? Effect.sync(options.now) : Clock.currentTimeMillis
  return (ctx: AuthContext): Effect.Effect<AuthDecision> => {
    if (ctx.method !== "publickey") return Effect.succeed(AuthDecision.reject())
    return Effect.flatMap(now, (millis) => {
      const address = clientAddress(ctx.connection)
      const verdict = authorizeKey(entries, {
        username: ctx.username,
        key: ctx.certificate?.blob ?? ctx.key.blob,
        now: millis,
        trustedUserCAKeys,
        ...(address !== undefined ? { clientAddress: address } : {})
      })
      if (verdict._tag === "Allowed") return Effect.succeed(AuthDecision.acceptWith(verdict.restrictions))
      return Effect.as(Effect.logDebug(`publickey for ${ctx.username} refused: ${verdict.message}`), AuthDecision.reject())
    })
  }
}

// ---- sessions ---------------------------------------------------------------------------

/** A session channel after exec, shell or subsystem was accepted: the server's side of the process. */
export interface ServerProcess {
  /** What the client sends (the process's stdin); ends at the client's EOF. Reading it grants the client more window. */
  readonly input: Stream.Stream<Uint8Array, SshChannelError>
  /** Writes to the client's stdout, waiting while its window or the socket is full. */
  readonly write: (data: Uint8Array | string) => Effect.Effect<void, SshChannelError>
  /** Writes to the client's stderr (extended data 1). */
  readonly writeStderr: (data: Uint8Array | string) => Effect.Effect<void, SshChannelError>
  /** stdout as a Sink (sends no EOF: `exit` does). */
  readonly stdout: Sink.Sink<void, Uint8Array | string, never, SshChannelError>
  readonly stderr: Sink.Sink<void, Uint8Array | string, never, SshChannelError>
  /** Sends EOF early; `exit` sends it anyway. */
  readonly end: Effect.Effect<void>
  /** Sends exit-status, EOF and CLOSE, in that order, and waits for the client's CLOSE. */
  readonly exit: (code: number) => Effect.Effect<void>
  /** Sends exit-signal (signal name without "SIG"), EOF and CLOSE, and waits for the client's CLOSE. */
  readonly exitSignal: (signal: string, options?: { readonly coreDumped?: boolean; readonly message?: string }) => Effect.Effect<void>
  readonly channel: SshChannel
}

interface Answerable<A> {
  readonly wantReply: boolean
  /** Answers success (when the client wants a reply). */
  readonly accept: Effect.Effect<A, SshChannelError>
  /** Answers failure (when the client wants a reply). Unanswered requests are refused when the next one is taken. */
  readonly reject: Effect.Effect<void>
}

/** A request on a session channel (RFC 4254 §6, OpenSSH extensions). */
export type SessionRequest =
  | (Answerable<void> & { readonly _tag: "Pty"; readonly pty: PtyRequest })
  | (Answerable<void> & { readonly _tag: "Env"; readonly name: string; readonly value: string })
  | (Answerable<void> & { readonly _tag: "X11"; readonly x11: X11Request })
  | (Answerable<void> & { readonly _tag: "AuthAgent" })
  | (Answerable<void> & { readonly _tag: "WindowChange"; readonly size: WindowChange })
  | (Answerable<void> & { readonly _tag: "Signal"; readonly signal: string })
  | (Answerable<ServerProcess> & {
      readonly _tag: "Exec"
      readonly command: string
      /**
       * Present when a forced command (authorized_keys `command=`, a certificate's force-command)
       * replaced what the client asked: its command, or the subsystem's name (sshd's SSH_ORIGINAL_COMMAND).
       */
      readonly originalCommand?: string
    })
  | (Answerable<ServerProcess> & { readonly _tag: "Shell" })
  | (Answerable<ServerProcess> & { readonly _tag: "Subsystem"; readonly name: string })
  | (Answerable<void> & { readonly _tag: "Other"; readonly request: string; readonly data: Uint8Array })

/** One session channel. */
export interface ServerSession {
  readonly connection: ConnectionInfo
  readonly username: string
  readonly channelId: number
  /**
   * What the authentication allows. The server enforces what it can see: a forced command
   * arrives as an Exec request (for shell and subsystem requests too), and pty-req, x11-req and
   * auth-agent-req are refused when not permitted. `environment` is for the handler to apply.
   */
  readonly restrictions: Restrictions
  /**
   * The channel's requests in the order they came; ends when the channel closes. Answer each
   * before taking the next (a request left unanswered is refused then). Long work started by
   * exec/shell/subsystem belongs in a fiber (`Effect.forkScoped`): the session's scope ends with the channel.
   */
  readonly requests: Stream.Stream<SessionRequest>
  /**
   * Runs `handle` on each request in turn, as `Stream.runForEach(requests, handle)` does, for
   * less: running a Stream costs ~0.3 ms of CPU even when it is short, a fair part of a short
   * connection's cost to the server.
   */
  readonly forEachRequest: <E, R>(handle: (request: SessionRequest) => Effect.Effect<void, E, R>) => Effect.Effect<void, E, R>
  /** Closes the channel. */
  readonly close: Effect.Effect<void>
}

/** A global request from an authenticated client; reply true/false, or bytes for success with data. */
export interface GlobalRequestContext {
  readonly name: string
  readonly wantReply: boolean
  readonly data: Uint8Array
  readonly username: string
  readonly connection: ConnectionInfo
  /** What the authentication allows; forwarding requests are refused before this handler when `portForwarding` is false. */
  readonly restrictions: Restrictions
}

// ---- the server -------------------------------------------------------------------------

export interface ServerOptions<R = never> {
  /** Listen on TCP; port 0 picks a free port (see `Server.address`). Absent: only `handleConnection`. */
  readonly listen?: { readonly host?: string; readonly port: number }
  readonly hostKeys: ReadonlyArray<SshPrivateKey>
  /**
   * OpenSSH host certificates (`ssh_host_ed25519_key-cert.pub`), at most one per host key: each
   * is offered under its `*-cert-v01@openssh.com` algorithms and signed with its host key.
   */
  readonly hostCertificates?: ReadonlyArray<SshCertificate | SshPublicKey>
  readonly algorithms?: AlgorithmOptions
  /** Text shown to the user before authentication (USERAUTH_BANNER). */
  readonly banner?: string
  /** Lines sent before the identification line (RFC 4253 §4.2). */
  readonly greeting?: string
  /** Software version in our identification line. */
  readonly ident?: string
  /** Methods announced in USERAUTH_FAILURE (default publickey, password, keyboard-interactive). */
  readonly authMethods?: ReadonlyArray<string>
  readonly authenticate: (ctx: AuthContext) => Effect.Effect<AuthDecision, AuthCancelled, R>
  /** Runs for each session channel; without it session opens are refused. */
  readonly onSession?: (session: ServerSession) => Effect.Effect<void, never, R | Scope.Scope>
  /** Global requests other than the ones the server answers itself; without it they are refused. */
  readonly onGlobalRequest?: (request: GlobalRequestContext) => Effect.Effect<boolean | Uint8Array, never, R>
  /** Failed authentication attempts allowed; the next one disconnects (OpenSSH MaxAuthTries, default 6). */
  readonly maxAuthTries?: number
  /** Time allowed from connect to authenticated (default 120 s). */
  readonly loginGraceTime?: Duration.DurationInput
  /** Unauthenticated connections at once; more are dropped at connect (default 10). */
  readonly maxStartups?: number
  /** Channels open at once per connection (default 64). */
  readonly maxChannels?: number
  /** The client's want-reply global requests awaiting our answer (default 16). */
  readonly maxPendingGlobalRequests?: number
  /** Interval of keepalive@openssh.com requests after authentication; absent or 0 disables them. */
  readonly keepaliveInterval?: Duration.DurationInput
  /** Unanswered keepalives before the connection is dropped (default 3). */
  readonly keepaliveCountMax?: number
  readonly rekeyBytes?: number
  readonly rekeyInterval?: Duration.DurationInput
}

export interface Server {
  /** The bound TCP address, when listening. */
  readonly address: { readonly host: string; readonly port: number } | undefined
  /** The host keys served, with their fingerprints ("SHA256:..."). */
  readonly hostKeys: ReadonlyArray<{
    readonly type: string
    readonly fingerprint: string
    readonly publicKey: SshPublicKey
    /** The host certificate served for this key, when one was given. */
    readonly certificate?: SshCertificate
  }>
  /**
   * Serves one connection over any duplex (a socket, a channel, an in-memory pair). Returns at
   * once; the connection ends at the latest with the server's scope.
   */
  readonly handleConnection: (socket: Duplex, peer?: { readonly remoteAddress?: string; readonly remotePort?: number }) => Effect.Effect<void>
  /** Connections open now, and how many of them are authenticated. */
  readonly stats: Effect.Effect<{ readonly connections: number; readonly authenticated: number }>
}

export type ServerError = SshConnectError | SshTransportError | SshKeyError

const DEFAULT_AUTH_METHODS = ["publickey", "password", "keyboard-interactive"]
const encoder = new TextEncoder()
/** RFC 8308: the signature algorithms we accept for user authentication. */
const SERVER_EXT_INFO: ReadonlyArray<readonly [string, Uint8Array]> = [["server-sig-algs", encoder.encode(USER_AUTH_SIGNATURE_ALGORITHMS.join(","))]]

function hostKeySigner(key: SshPrivateKey): HostKeySigner {
  return { algorithms: signatureAlgorithms(key.type), blob: key.publicKey.blob, sign: (alg, data) => key.sign(alg, data) }
}

/** A host certificate proves possession of its certified key: signatures are the key's plain ones. */
function hostCertificateSigner(key: SshPrivateKey, certificate: SshCertificate): HostKeySigner {
  return {
    algorithms: signatureAlgorithms(certificate.type),
    blob: certificate.blob,
    sign: (alg, data) => key.sign(plainAlgorithmOfCertificate(alg) ?? alg, data)
  }
}

/** Pairs each host certificate with the host key it certifies. */
function matchHostCertificates(
  keys: ReadonlyArray<SshPrivateKey>,
  certificates: ReadonlyArray<SshCertificate | SshPublicKey>
): ReadonlyMap<SshPrivateKey, SshCertificate> | SshKeyError {
  const matched = new Map<SshPrivateKey, SshCertificate>()
  for (const given of certificates) {
    const cert = "signatureKey" in given ? given : given.certificate
    if (cert === undefined) return new SshKeyError({ reason: "unsupported-key-type", message: `a ${given.type} key is not a host certificate` })
    if (cert.certType !== "host") {
      return new SshKeyError({ reason: "unsupported-key-type", message: `certificate ${JSON.stringify(cert.keyId)} is a user certificate, not a host certificate` })
    }
    const key = keys.find((k) => Buffer.from(k.publicKey.blob).equals(cert.publicKey))
    if (key === undefined) {
      return new SshKeyError({
        reason: "unsupported-key-type",
        message: `host certificate ${JSON.stringify(cert.keyId)} certifies ${fingerprint(cert.publicKey)}, which is none of the host keys`
      })
    }
    if (matched.has(key)) return new SshKeyError({ reason: "unsupported-key-type", message: `two host certificates for ${fingerprint(cert.publicKey)}` })
    matched.set(key, cert)
  }
  return matched
}

/**
 * Starts an SSH server bound to the current scope: closing the scope closes the listener
 * and every connection.
 *
 * @example
 * const server = yield* SshServer.make({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   hostKeys: [generatePrivateKey("ed25519")],
 *   authenticate: (ctx) => Effect.succeed(ctx.method === "password" && Redacted.value(ctx.password) === "pw" ? AuthDecision.accept : AuthDecision.reject()),
 *   onSession: (session) => Stream.runForEach(session.requests, (req) =>
 *     req._tag === "Exec"
 *       ? Effect.flatMap(req.accept, (p) => Effect.forkScoped(Effect.zipRight(p.write(`ran ${req.command}\n`), p.exit(0))))
 *       : req.reject)
 * })
 */
export const make = <R = never>(options: ServerOptions<R>): Effect.Effect<Server, ServerError, Scope.Scope | R> =>
  Effect.gen(function* () {
    if (options.hostKeys.length === 0) {
      return yield* Effect.fail(new SshKeyError({ reason: "unsupported-key-type", message: "a server needs at least one host key" }))
    }
    for (const key of options.hostKeys) {
      if (signatureAlgorithms(key.type).length === 0 || key.type.startsWith("sk-")) {
        return yield* Effect.fail(new SshKeyError({ reason: "unsupported-key-type", message: `a ${key.type} key cannot be a host key` }))
      }
    }
    const algorithms = yield* Effect.try({
      // an RSA host key serves ssh-rsa too unless the user chose the list
      try: () => resolveAlgorithms({ hostKey: SUPPORTED.hostKey, ...options.algorithms }),
      catch: (cause) => new SshTransportError({ reason: "no-common-algorithm", message: (cause as Error).message, cause })
    })
    const certificates = matchHostCertificates(options.hostKeys, options.hostCertificates ?? [])
    if (certificates instanceof SshKeyError) return yield* Effect.fail(certificates)
    const plainSigners = options.hostKeys.map(hostKeySigner)
    const signers = [...plainSigners, ...[...certificates].map(([key, cert]) => hostCertificateSigner(key, cert))]
    const served = algorithms.hostKey.filter((a) => signers.some((s) => s.algorithms.includes(a)))
    if (served.length === 0) {
      return yield* Effect.fail(
        new SshTransportError({
          reason: "no-common-algorithm",
          message: `none of the host key algorithms (${algorithms.hostKey.join(", ")}) fits the host keys (${options.hostKeys.map((k) => k.type).join(", ")})`
        })
      )
    }
    const state: ServerState = { nextId: 1, unauthenticated: 0, open: 0, authenticated: 0 }
    // connection fibers are forked straight from the server's runtime: each connection
    // interrupts its own when it closes, and the finalizer below waits for every connection
    const run = Runtime.runFork(yield* Effect.runtime<R>())
    const maxAuthTries = options.maxAuthTries ?? 6
    const config: ConnectionConfig<R> = {
      options,
      plainSigners,
      state,
      run,
      maxAuthTries,
      loginGraceMs: Duration.toMillis(options.loginGraceTime ?? "120 seconds"),
      hostKeysAnnouncement: concatBytes(...plainSigners.map((s) => message((w) => w.string(s.blob)))),
      endpoint: {
        role: "server",
        software: options.ident ?? `effect_ssh_${VERSION}`,
        algorithms,
        hostKeys: signers,
        extInfo: SERVER_EXT_INFO,
        ...(options.greeting !== undefined ? { greeting: options.greeting } : {}),
        // the server refuses the attempt after the last allowed one itself, before the core would
        auth: { maxAuthTries: maxAuthTries + 1 },
        connection: {
          ...(options.maxChannels !== undefined ? { maxChannels: options.maxChannels } : {}),
          ...(options.maxPendingGlobalRequests !== undefined ? { maxPendingGlobalRequests: options.maxPendingGlobalRequests } : {})
        },
        ...(options.rekeyBytes !== undefined ? { rekeyBytes: options.rekeyBytes } : {}),
        ...(options.rekeyInterval !== undefined ? { rekeyIntervalMs: Duration.toMillis(options.rekeyInterval) } : {})
      },
      connections: new Set()
    }
    // every connection says goodbye, then its fibers end
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        const open = [...(config.connections ?? [])]
        config.connections = undefined
        let left = open.length
        if (left === 0) return resume(Effect.void)
        for (const connection of open) {
          connection.shutdown(() => {
            if (--left === 0) resume(Effect.void)
          })
        }
      })
    )

    const handleConnection: Server["handleConnection"] = (socket, peer = {}) => Effect.sync(() => serveConnection(config, socket, peer))

    let address: Server["address"]
    if (options.listen) {
      const listener = yield* listenTcp(options.listen.host ?? "127.0.0.1", options.listen.port, (socket, reader) =>
        serveConnection(config, socket, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }, reader)
      )
      const bound = listener.address() as net.AddressInfo
      address = { host: bound.address, port: bound.port }
    }

    return {
      address,
      hostKeys: options.hostKeys.map((k) => {
        const certificate = certificates.get(k)
        return { type: k.type, fingerprint: fingerprint(k.publicKey.blob), publicKey: k.publicKey, ...(certificate ? { certificate } : {}) }
      }),
      handleConnection,
      stats: Effect.sync(() => ({ connections: state.open, authenticated: state.authenticated }))
    } satisfies Server
  })

/** The server as a service. */
export class SshServer extends Context.Tag("effect-ssh/SshServer")<SshServer, Server>() {}

/** A layer running the server for the lifetime of the layer. */
export const layer = <R = never>(options: ServerOptions<R>): Layer.Layer<SshServer, ServerError, R> => Layer.scoped(SshServer, make(options))

interface ServerState {
  nextId: number
  unauthenticated: number
  open: number
  authenticated: number
}

type GlobalRequest = Extract<ConnectionEvent, { _tag: "GlobalRequest" }>

/** What every connection of one server shares, built once by `make`. */
interface ConnectionConfig<R> {
  readonly options: ServerOptions<R>
  /** The host keys without their certificates: what hostkeys-00@openssh.com announces, as OpenSSH does. */
  readonly plainSigners: ReadonlyArray<HostKeySigner>
  readonly state: ServerState
  readonly endpoint: EndpointConfig
  readonly maxAuthTries: number
  readonly loginGraceMs: number
  /** The hostkeys-00@openssh.com announcement, the same for every connection. */
  readonly hostKeysAnnouncement: Uint8Array
  /** Forks with the server's runtime: the application's services. */
  readonly run: (effect: Effect.Effect<void, never, R>, options?: Runtime.RunForkOptions) => Fiber.RuntimeFiber<void>
  /** Connections not yet finished; undefined once the server has shut down. */
  connections: Set<ServedConnection<R>> | undefined
}

function listenTcp(
  host: string,
  port: number,
  onSocket: (socket: net.Socket, reader: SocketReader | undefined) => void
): Effect.Effect<net.Server, SshConnectError, Scope.Scope> {
  return Effect.acquireRelease(
    Effect.async<net.Server, SshConnectError>((resume) => {
      // paused until adoptAccepted has moved the socket to the shared read buffer
      const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
        const { socket, reader } = adoptAccepted(accepted)
        onSocket(socket, reader)
      })
      const onError = (e: Error) =>
        resume(Effect.fail(new SshConnectError({ reason: "socket", message: `cannot listen on ${host}:${port}: ${e.message}`, cause: e })))
      server.once("error", onError)
      server.listen(port, host, () => {
        server.off("error", onError)
        // a failing accept must not crash the process; the listener goes on
        server.on("error", () => {})
        resume(Effect.succeed(server))
      })
    }),
    // connections are closed by their own scopes; this only stops accepting new ones
    (server) => Effect.sync(() => server.close())
  )
}

type AuthSignal = ServerAuthEvent | { readonly _tag: "Closed" }

/** Errors end the connection through "close"; without a listener they would crash the process. */
function ignoreSocketError(): void {}

/** Serves one connection, unless the server is shutting down or too many are still unauthenticated. */
function serveConnection<R>(
  config: ConnectionConfig<R>,
  socket: Duplex,
  peer: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined },
  reader?: SocketReader
): void {
  const { options, state, connections } = config
  if (!connections) return
  socket.on("error", ignoreSocketError)
  if (state.unauthenticated >= (options.maxStartups ?? 10)) {
    socket.destroy()
    return
  }
  connections.add(new ServedConnection(config, socket, peer, reader))
}

/** The application's view of a connection. Its functions work detached too (`const { algorithms } = info`). */
class ServedConnectionInfo implements ConnectionInfo {
  readonly clientIdentification: () => string
  readonly algorithms: () => KexSummary | undefined
  constructor(
    readonly id: number,
    readonly remoteAddress: string | undefined,
    readonly remotePort: number | undefined,
    connection: ServedConnection<unknown>
  ) {
    this.clientIdentification = () => connection.driver.endpoint.transport.peerIdentification ?? ""
    this.algorithms = () => connection.summary
  }
}

/**
 * One connection, from the identification line to the close. It is driven by the socket's
 * callbacks; fibers exist only while there is work for them (authentication, a session, a
 * global request being answered), so an idle authenticated connection holds no fiber, queue or
 * scope — only this object and the driver.
 */
class ServedConnection<R> implements DriverHandlers {
  readonly info: ServedConnectionInfo
  readonly driver: Driver
  summary: KexSummary | undefined
  /** Who authenticated, and what the authentication allows; set once. */
  username: string | undefined
  restrictions: Restrictions = UNRESTRICTED
  private preAuth = true
  private noMoreSessions = false
  private loginGrace: ReturnType<typeof setTimeout> | undefined
  /** Authentication requests for the auth loop, while it runs. */
  private authSignals: Inbox<AuthSignal> | undefined
  /** Global requests waiting for their answer, answered in order by one fiber at a time. */
  private globalRequests: Array<GlobalRequest> | undefined
  private answering = false
  /** This connection's running fibers, interrupted when it closes. */
  private fibers: Set<Fiber.RuntimeFiber<void>> | undefined
  private onFinished: (() => void) | undefined

  constructor(
    readonly config: ConnectionConfig<R>,
    socket: Duplex,
    peer: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined },
    reader: SocketReader | undefined
  ) {
    const state = config.state
    state.unauthenticated++
    state.open++
    this.info = new ServedConnectionInfo(state.nextId++, peer.remoteAddress, peer.remotePort, this as ServedConnection<unknown>)
    this.driver = new Driver(socket, config.endpoint, this, reader)
    this.loginGrace = setTimeout(() => {
      const seconds = config.loginGraceMs / 1000
      this.driver.run((e) =>
        e.transport.abort(new ProtocolError("timeout", `login grace time of ${seconds} s exceeded`, DisconnectReason.BY_APPLICATION))
      )
    }, config.loginGraceMs)
    this.driver.onClose(() => this.closed())
  }

  onEvent(event: EndpointEvent): void {
    if (event._tag === "KexDone") this.summary = event.summary
    else if (event._tag === "ServerAuth") this.authSignal(event.event)
    else if (event._tag === "Closed") this.authSignals?.offer({ _tag: "Closed" })
  }

  onGlobalRequest(event: GlobalRequest): void {
    // set at once: a session open may follow in the same read, before the answering fiber runs
    if (event.name === "no-more-sessions@openssh.com") this.noMoreSessions = true
    ;(this.globalRequests ??= []).push(event)
    this.answerGlobalRequests()
  }

  onChannelOpen(event: Extract<ConnectionEvent, { _tag: "ChannelOpenRequest" }>): void {
    const { onSession } = this.config.options
    if (event.type !== "session") {
      this.driver.run((e) => e.connection.rejectChannel(event.id, ChannelOpenFailure.UNKNOWN_CHANNEL_TYPE, `unsupported channel type ${event.type}`))
      return
    }
    if (this.noMoreSessions || !onSession) {
      const why = this.noMoreSessions ? "no-more-sessions@openssh.com was sent" : "sessions are not served"
      this.driver.run((e) => e.connection.rejectChannel(event.id, ChannelOpenFailure.ADMINISTRATIVELY_PROHIBITED, why))
      return
    }
    const channel = this.driver.acceptChannel(event.id, "session")
    this.fork(runSession(channel, this.info, this.username ?? "", this.restrictions, onSession))
  }

  /** Disconnects for the server's shutdown; `done` runs once this connection has finished. */
  shutdown(done: () => void): void {
    this.onFinished = done
    this.driver.disconnect(DisconnectReason.BY_APPLICATION, "server shutting down")
  }

  /** Called by the auth loop once the application accepted; USERAUTH_SUCCESS is already sent. */
  authenticated(username: string, restrictions: Restrictions): void {
    this.username = username
    this.restrictions = restrictions
    this.config.state.authenticated++
    this.leavePreAuth()
    clearTimeout(this.loginGrace)
    this.loginGrace = undefined
    // hostkeys-00@openssh.com (draft-miller-sshm-hostkey-update): every host key, for UpdateHostKeys
    this.driver.globalRequest("hostkeys-00@openssh.com", this.config.hostKeysAnnouncement)
    this.answerGlobalRequests()
    const ping = keepalive(this.driver, this.config.options.keepaliveInterval, this.config.options.keepaliveCountMax)
    if (ping) this.fork(ping)
  }

  /** Starts the auth loop at the first request; it ends with the authentication, taking its state with it. */
  private authSignal(signal: ServerAuthEvent): void {
    let signals = this.authSignals
    if (!signals) {
      // the loop ends with the authentication or the connection: nothing waits for a later signal
      if (this.username !== undefined || this.driver.closed) return
      signals = this.authSignals = new Inbox<AuthSignal>()
      signals.offer(signal)
      // not immediate: the loop answers from the scheduler, never inside the driver's pump
      this.fork(
        authLoop(this, signals).pipe(Effect.ensuring(Effect.sync(() => (this.authSignals = undefined)))),
        { immediate: false }
      )
      return
    }
    signals.offer(signal)
  }

  private answerGlobalRequests(): void {
    const queue = this.globalRequests
    if (this.answering || this.username === undefined || !queue || queue.length === 0) return
    this.answering = true
    const self = this
    this.fork(
      Effect.gen(function* () {
        for (let next = queue.shift(); next !== undefined; next = queue.shift()) yield* answerGlobalRequest(self, next)
      }).pipe(
        Effect.ensuring(
          Effect.sync(() => {
            this.answering = false
            if (this.globalRequests === queue && queue.length === 0) this.globalRequests = undefined
          })
        )
      )
    )
  }

  /** Runs `effect` with the server's runtime, as one of this connection's fibers. */
  private fork(effect: Effect.Effect<void, never, R>, options?: Runtime.RunForkOptions): void {
    if (this.driver.closed) return
    const fiber = this.config.run(effect, options)
    const fibers = (this.fibers ??= new Set())
    fibers.add(fiber)
    fiber.addObserver(() => {
      fibers.delete(fiber)
      if (fibers.size === 0 && this.fibers === fibers) this.fibers = undefined
    })
  }

  private leavePreAuth(): void {
    if (!this.preAuth) return
    this.preAuth = false
    this.config.state.unauthenticated--
  }

  /** The driver closed: the connection's fibers are interrupted, then it is counted out. */
  private closed(): void {
    clearTimeout(this.loginGrace)
    this.loginGrace = undefined
    const fibers = this.fibers ? [...this.fibers] : []
    this.fibers = undefined
    let running = fibers.length
    if (running === 0) return this.finish()
    for (const fiber of fibers) {
      fiber.addObserver(() => {
        if (--running === 0) this.finish()
      })
      fiber.unsafeInterruptAsFork(FiberId.none)
    }
  }

  private finish(): void {
    const state = this.config.state
    this.leavePreAuth()
    state.open--
    if (this.username !== undefined) state.authenticated--
    this.config.connections?.delete(this)
    this.onFinished?.()
  }
}

/** Reads authentication requests one at a time and answers each with the application's decision. */
function authLoop<R>(conn: ServedConnection<R>, signals: Inbox<AuthSignal>): Effect.Effect<void, never, R> {
  const { driver, info: connection } = conn
  const { options, maxAuthTries } = conn.config
  return Effect.gen(function* () {
    let lookahead: AuthSignal | undefined
    let failures = 0
    let requests = 0
    let bannerSent = false
    const completed: string[] = []
    // what the factors passed so far allow (multi-factor)
    let carried: Restrictions = UNRESTRICTED
    const methods = options.authMethods ?? DEFAULT_AUTH_METHODS
    const auth = () => driver.endpoint.serverAuth
    function reject(list: ReadonlyArray<string>, partial: boolean, counts: boolean): void {
      if (counts && !partial) failures++
      driver.run(() => auth().reject(list, partial, counts))
    }
    // read once: every request then takes the time without an effect of its own
    const clock = yield* Effect.clock

    for (;;) {
      const signal = lookahead ?? signals.poll() ?? (yield* signals.take)
      lookahead = undefined
      if (signal._tag === "Closed") return
      if (signal._tag === "InfoResponse") {
        // an answer nobody asked for now: the core already refuses INFO_RESPONSE without a request
        continue
      }
      const request = signal.request
      requests++
      if (!bannerSent && options.banner) {
        bannerSent = true
        driver.run(() => auth().banner(options.banner!))
      }
      // like OpenSSH: the first "none" is free, every other refused request counts
      const counts = !(request.method === "none" && requests === 1)
      if (counts && failures >= maxAuthTries) {
        driver.run((e) =>
          e.transport.abort(
            new ProtocolError("protocol", `too many authentication failures (${failures})`, DisconnectReason.NO_MORE_AUTH_METHODS_AVAILABLE)
          )
        )
        return
      }
      const context = toContext(request, connection, completed, clock.unsafeCurrentTimeMillis(), (prompts, opts) =>
        Effect.gen(function* () {
          driver.run(() => auth().infoRequest(opts?.name ?? "", opts?.instructions ?? "", prompts))
          const answer = yield* signals.take
          if (answer._tag === "InfoResponse") {
            if (answer.answers.length === prompts.length) return answer.answers
            driver.run((e) =>
              e.transport.abort(new ProtocolError("protocol", `${answer.answers.length} answers to ${prompts.length} keyboard-interactive prompts`))
            )
            return yield* Effect.fail(new AuthCancelled({ message: "wrong number of answers" }))
          }
          lookahead = answer
          return yield* Effect.fail(new AuthCancelled({ message: "the client abandoned keyboard-interactive" }))
        })
      )
      if ("refused" in context) {
        yield* Effect.logDebug(`authentication request refused: ${context.refused}`)
        reject(methods, false, counts)
        continue
      }
      const decision = yield* options.authenticate(context).pipe(
        Effect.catchTag("AuthCancelled", () => Effect.succeed("cancelled" as const)),
        Effect.catchAllCause((cause) =>
          Effect.logWarning("authenticate handler failed; refusing the request", cause).pipe(Effect.as(AuthDecision.reject()))
        )
      )
      if (decision === "cancelled" || driver.closed) continue
      if (context.method === "publickey" && context.query) {
        if (decision._tag === "Accept" || (decision._tag === "Reject" && decision.partialSuccess)) {
          driver.run(() => auth().publicKeyOk(context.algorithm, context.certificate?.blob ?? context.key.blob))
        } else {
          reject(decision._tag === "Reject" ? (decision.methods ?? methods) : methods, false, counts)
        }
        continue
      }
      const succeeds = decision._tag === "Accept" || (decision._tag === "Reject" && decision.partialSuccess === true)
      const allowed = succeeds ? grantedRestrictions(carried, decision.restrictions, context) : carried
      if (typeof allowed === "string") {
        yield* Effect.logWarning(`refusing ${context.method} for ${context.username}: ${allowed}`)
        reject(methods, false, counts)
        continue
      }
      switch (decision._tag) {
        case "Accept":
          driver.run((e) => {
            e.serverAuth.accept()
            // delayed compression (zlib@openssh.com) starts right after USERAUTH_SUCCESS
            e.transport.authenticated()
          })
          conn.authenticated(request.username, allowed)
          return
        case "PasswordChange":
          if (context.method === "password" && context.newPassword === undefined) {
            driver.run(() => auth().passwordChangeRequest(decision.prompt))
          } else {
            reject(methods, false, counts)
          }
          continue
        case "Reject":
          if (decision.partialSuccess) {
            if (!completed.includes(context.method)) completed.push(context.method)
            carried = allowed
          }
          reject(decision.methods ?? methods, decision.partialSuccess ?? false, counts)
          continue
      }
    }
  })
}


/**
 * What a successful factor allows: what the earlier factors allowed, narrowed by the decision's
 * restrictions and by the certificate the client authenticated with. A string when they conflict.
 */
function grantedRestrictions(carried: Restrictions, decided: Restrictions | undefined, context: AuthContext): Restrictions | string {
  const own = context.method === "publickey" && context.certificate ? withCertificate(decided ?? UNRESTRICTED, context.certificate) : decided
  if (typeof own === "string") return own
  return own === undefined ? carried : intersectRestrictions(carried, own)
}

/** Node reports IPv4 clients of a dual-stack listener as `::ffff:a.b.c.d`; patterns and CIDRs name the IPv4 form. */
function clientAddress(connection: ConnectionInfo): string | undefined {
  const address = connection.remoteAddress
  return address?.toLowerCase().startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address
}

/** The key, or undefined when it cannot be read. */
function readPublicKey(blob: Uint8Array): SshPublicKey | undefined {
  try {
    return parsePublicKeyBlob(blob)
  } catch {
    return undefined
  }
}

/**
 * The handler's view of a request, or why the server refuses it outright: an unknown method, a
 * key it cannot read, a signature algorithm it does not accept, a signature that does not
 * verify, or a certificate that is not valid (CA signature, type, validity, critical options).
 */
function toContext(
  request: AuthRequest,
  connection: ConnectionInfo,
  completed: ReadonlyArray<string>,
  now: number,
  prompt: Extract<AuthContext, { method: "keyboard-interactive" }>["prompt"]
): AuthContext | { readonly refused: string } {
  const base = { username: request.username, connection, completed: [...completed] }
  if ("unknown" in request) return { refused: "unknown method" }
  switch (request.method) {
    case "none":
      return { ...base, method: "none" }
    case "password":
      return {
        ...base,
        method: "password",
        password: Redacted.make(request.password),
        ...(request.newPassword !== undefined ? { newPassword: Redacted.make(request.newPassword) } : {})
      }
    case "publickey": {
      const k = readPublicKey(request.key)
      if (!k) return { refused: "unreadable public key" }
      if (!PUBLICKEY_ALGORITHMS.includes(request.algorithm) || !signatureAlgorithms(k.type).includes(request.algorithm)) {
        return { refused: `${request.algorithm} is not accepted for a ${k.type} key` }
      }
      if (request.signed && !request.signatureValid) return { refused: `bad ${request.algorithm} signature` }
      const common = { ...base, method: "publickey" as const, algorithm: request.algorithm, query: !request.signed, signatureValid: request.signatureValid }
      if (k.certificate === undefined) return { ...common, key: k }
      const address = clientAddress(connection)
      const verdict = checkCertificate(k.certificate, { certType: "user", now, ...(address !== undefined ? { clientAddress: address } : {}) })
      if (!verdict.ok) return { refused: verdict.message }
      const certified = readPublicKey(k.certificate.publicKey)
      if (!certified) return { refused: "unreadable certified key" }
      return { ...common, key: certified, certificate: k.certificate }
    }
    case "keyboard-interactive":
      return { ...base, method: "keyboard-interactive", submethods: request.submethods, prompt }
    case "hostbased": {
      const k = readPublicKey(request.hostKey)
      if (!k || !request.signatureValid || !USER_AUTH_SIGNATURE_ALGORITHMS.includes(request.algorithm)) {
        return { refused: `hostbased ${request.algorithm}: unreadable key, unaccepted algorithm or bad signature` }
      }
      return {
        ...base,
        method: "hostbased",
        algorithm: request.algorithm,
        key: k,
        hostname: request.hostname,
        localUsername: request.localUsername,
        signatureValid: true
      }
    }
  }
}

/** Answers one of the client's global requests: the OpenSSH ones here, the rest by the application. */
function answerGlobalRequest<R>(conn: ServedConnection<R>, request: GlobalRequest): Effect.Effect<void, never, R> {
  const { driver, config, restrictions } = conn
  const reply = (result: boolean | Uint8Array) =>
    Effect.sync(() => {
      if (!request.wantReply) return
      driver.run((e) => (typeof result === "boolean" ? e.connection.replyGlobalRequest(result) : e.connection.replyGlobalRequest(true, result)))
    })
  switch (request.name) {
    case "no-more-sessions@openssh.com":
      return reply(true)
    case "keepalive@openssh.com":
      // any answer proves liveness; OpenSSH answers failure too
      return reply(false)
    case "hostkeys-prove-00@openssh.com":
      return reply(proveHostKeys(driver, config.plainSigners, request.data) ?? false)
    case "tcpip-forward":
    case "streamlocal-forward@openssh.com":
      if (!restrictions.portForwarding) return reply(false)
  }
  const handler = config.options.onGlobalRequest
  if (!handler) return reply(false)
  const { name, wantReply, data } = request
  return handler({ name, wantReply, data, username: conn.username ?? "", connection: conn.info, restrictions }).pipe(
    Effect.catchAllCause((cause) => Effect.logWarning("global request handler failed", cause).pipe(Effect.as(false))),
    Effect.flatMap(reply)
  )
}

/**
 * Signs each requested host key over ("hostkeys-prove-00@openssh.com", session id, key), as
 * draft-miller-sshm-hostkey-update says. RSA keys sign with the negotiated RSA algorithm, or
 * rsa-sha2-512. Undefined (a failure reply) when a requested key is not one of ours.
 */
function proveHostKeys(driver: Driver, signers: ReadonlyArray<HostKeySigner>, data: Uint8Array): Uint8Array | undefined {
  const sessionId = driver.endpoint.transport.sessionId
  if (!sessionId) return undefined
  // with a host certificate negotiated, an RSA key signs with the certificate's plain algorithm
  const hostKeyAlgorithm = driver.endpoint.transport.negotiated?.hostKey ?? ""
  const negotiated = plainAlgorithmOfCertificate(hostKeyAlgorithm) ?? hostKeyAlgorithm
  const signatures: Uint8Array[] = []
  let offset = 0
  while (offset < data.length) {
    if (offset + 4 > data.length) return undefined
    const length = new DataView(data.buffer, data.byteOffset + offset, 4).getUint32(0)
    if (offset + 4 + length > data.length) return undefined
    const blob = data.subarray(offset + 4, offset + 4 + length)
    offset += 4 + length
    const signer = signers.find((s) => Buffer.from(s.blob).equals(blob))
    if (!signer) return undefined
    const rsa = signer.algorithms.includes("rsa-sha2-512")
    const algorithm = rsa ? (negotiated.startsWith("rsa-sha2-") ? negotiated : "rsa-sha2-512") : signer.algorithms[0]!
    const signed = message((w) => w.string("hostkeys-prove-00@openssh.com").string(sessionId).string(blob))
    signatures.push(message((w) => w.string(signer.sign(algorithm, signed))))
  }
  return concatBytes(...signatures)
}


// ---- session channels -------------------------------------------------------------------

interface PendingAnswer {
  answered: boolean
  answer(ok: boolean): void
}

/** Runs the session handler for one channel; the handler's scope ends when the channel closes. */
function runSession<R>(
  channel: ChannelState,
  connection: ConnectionInfo,
  username: string,
  restrictions: Restrictions,
  onSession: (session: ServerSession) => Effect.Effect<void, never, R | Scope.Scope>
): Effect.Effect<void, never, R> {
  const queue = new Inbox<SessionRequest | null>()
  let last: PendingAnswer | undefined
  const closeChannel = Effect.async<void>((resume) => {
    channel.close()
    channel.whenClosed(() => resume(Effect.void))
  })
  channel.onRequest = (request, wantReply, data) => {
    // decoded here, synchronously: a malformed request is a protocol error that ends the connection
    queue.offer(decodeSessionRequest(channel, request, wantReply, data))
  }
  channel.whenClosed(() => queue.offer(null))
  const settleLast = () => {
    if (last && !last.answered) last.answer(false)
  }
  const pull: Effect.Effect<SessionRequest, Option.Option<never>> = Effect.suspend(() => {
    settleLast()
    return queue.take
  }).pipe(
    Effect.flatMap((r) => {
      if (r === null) {
        queue.offer(null) // later pulls end too
        return Effect.fail(Option.none())
      }
      last = (r as unknown as { readonly pending: PendingAnswer }).pending
      const allowed = restrictRequest(r, restrictions)
      // a refused request is answered in turn by the next pull's settleLast, keeping replies in order
      return allowed === undefined ? pull : Effect.succeed(allowed)
    })
  )
  const next = Effect.catchAll(pull, () => Effect.succeed(undefined))
  const forEachRequest = <E, R2>(handle: (request: SessionRequest) => Effect.Effect<void, E, R2>): Effect.Effect<void, E, R2> =>
    Effect.flatMap(next, (request) => (request === undefined ? Effect.void : Effect.zipRight(handle(request), forEachRequest(handle))))
  const session: ServerSession = {
    connection,
    username,
    channelId: channel.id,
    restrictions,
    requests: Stream.repeatEffectOption(pull),
    forEachRequest,
    close: closeChannel
  }
  // the channel's close ends the handler: interrupted from the close callback, without a racing fiber
  const handler = Effect.withFiberRuntime<void, never, R>((fiber) => {
    channel.whenClosed(() => fiber.unsafeInterruptAsFork(FiberId.none))
    return Effect.scoped(onSession(session)).pipe(Effect.catchAllCause((cause) => Effect.logWarning("session handler failed", cause)))
  })
  return handler.pipe(
    Effect.ensuring(
      Effect.suspend(() => {
        settleLast()
        return channel.closed ? Effect.void : closeChannel
      })
    )
  )
}

/**
 * The request as the restrictions allow it: undefined when refused (a pty, X11 or agent
 * forwarding that is not permitted), an Exec of the forced command in place of exec, shell and
 * subsystem, or unchanged.
 */
function restrictRequest(request: SessionRequest, restrictions: Restrictions): SessionRequest | undefined {
  switch (request._tag) {
    case "Pty":
      return restrictions.pty ? request : undefined
    case "X11":
      return restrictions.x11Forwarding ? request : undefined
    case "AuthAgent":
      return restrictions.agentForwarding ? request : undefined
    case "Exec":
    case "Shell":
    case "Subsystem": {
      const forced = restrictions.command
      if (forced === undefined) return request
      const original = request._tag === "Exec" ? request.command : request._tag === "Subsystem" ? request.name : undefined
      const { pending } = request as unknown as { readonly pending: PendingAnswer }
      return Object.assign(
        {
          _tag: "Exec" as const,
          wantReply: request.wantReply,
          accept: request.accept,
          reject: request.reject,
          command: forced,
          ...(original !== undefined ? { originalCommand: original } : {})
        },
        { pending }
      )
    }
    default:
      return request
  }
}

function decodeSessionRequest(channel: ChannelState, request: string, wantReply: boolean, data: Uint8Array): SessionRequest {
  const pending: PendingAnswer = {
    answered: false,
    answer(ok) {
      if (this.answered) return
      this.answered = true
      if (wantReply) channel.driver.run((e) => e.connection.replyRequest(channel.id, ok))
    }
  }
  const already = () =>
    new SshChannelError({ reason: "request-failed", message: `the "${request}" request on channel ${channel.id} was already answered` })
  const simple = {
    wantReply,
    accept: Effect.suspend(() => (pending.answered ? Effect.fail(already()) : Effect.sync(() => pending.answer(true)))),
    reject: Effect.sync(() => pending.answer(false))
  }
  const starting = {
    ...simple,
    accept: Effect.suspend(() => {
      if (pending.answered) return Effect.fail(already())
      pending.answer(true)
      return Effect.succeed(serverProcess(channel))
    })
  }
  const withPending = <T extends object>(r: T): T => Object.assign(r, { pending })
  switch (request) {
    case "pty-req":
      return withPending({ ...simple, _tag: "Pty", pty: decodePtyRequest(data) })
    case "env": {
      const env = decodeEnvRequest(data)
      return withPending({ ...simple, _tag: "Env", name: env.name, value: env.value })
    }
    case "x11-req":
      return withPending({ ...simple, _tag: "X11", x11: decodeX11Request(data) })
    case "auth-agent-req@openssh.com":
      return withPending({ ...simple, _tag: "AuthAgent" })
    case "window-change":
      return withPending({ ...simple, _tag: "WindowChange", size: decodeWindowChange(data) })
    case "signal":
      return withPending({ ...simple, _tag: "Signal", signal: decodeSignalRequest(data) })
    case "exec":
      return withPending({ ...starting, _tag: "Exec", command: decodeExecRequest(data) })
    case "shell":
      return withPending({ ...starting, _tag: "Shell" })
    case "subsystem":
      return withPending({ ...starting, _tag: "Subsystem", name: decodeSubsystemRequest(data) })
    default:
      return withPending({ ...simple, _tag: "Other", request, data })
  }
}

function serverProcess(state: ChannelState): ServerProcess {
  const channel = fromState(state)
  const finish = (name: string, data: Uint8Array) =>
    Effect.async<void>((resume) => {
      state.request(name, data)
      state.close()
      state.whenClosed(() => resume(Effect.void))
    })
  return {
    channel,
    input: channel.stdout,
    write: channel.write,
    writeStderr: channel.writeStderr,
    stdout: Sink.forEach(channel.write),
    stderr: Sink.forEach(channel.writeStderr),
    end: channel.end,
    exit: (code) => finish("exit-status", encodeExitStatus(code >>> 0)),
    exitSignal: (signal, o = {}) =>
      finish("exit-signal", encodeExitSignal({ signal, coreDumped: o.coreDumped ?? false, message: o.message ?? "", language: "" }))
  }
}

/**
 * An unbounded FIFO that callbacks fill and fibers take from, as Queue.unbounded would, for
 * a fraction of its allocation: one per connection while it authenticates, one per session.
 */
class Inbox<A> {
  private readonly items: A[] = []
  private readonly takers: Array<(item: Effect.Effect<A>) => void> = []

  offer(item: A): void {
    const taker = this.takers.shift()
    if (taker) taker(Effect.succeed(item))
    else this.items.push(item)
  }

  /** The next item if one is waiting, without suspending. */
  poll(): A | undefined {
    return this.items.shift()
  }

  readonly take: Effect.Effect<A> = Effect.async<A>((resume) => {
    if (this.items.length > 0) return resume(Effect.succeed(this.items.shift() as A))
    this.takers.push(resume)
    return Effect.sync(() => {
      const i = this.takers.indexOf(resume)
      if (i >= 0) this.takers.splice(i, 1)
    })
  })
}
