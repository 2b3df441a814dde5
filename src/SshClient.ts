import { createHash } from "node:crypto"
import * as net from "node:net"
import type { Duplex } from "node:stream"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { AuthSignal } from "./internal/clientAuth.js"
import { authenticate } from "./internal/clientAuth.js"
import { connectTcp, Driver } from "./internal/driver.js"
import { keepalive } from "./internal/keepalive.js"
import type { SocketReader } from "./internal/driver.js"
import { OpenSSHAgentClient } from "./node/OpenSSHAgent.js"
import { encodeDirectTcpip, encodeEnvRequest, encodeExecRequest, encodePtyRequest, encodeSignalRequest, encodeSubsystemRequest, encodeWindowChange } from "./protocol/connection/requests.js"
import type { TerminalModes } from "./protocol/connection/requests.js"
import type { SshCertificate } from "./protocol/keys/certificateEncoding.js"
import { fingerprint, parsePublicKeyBlob } from "./protocol/keys/publicKey.js"
import { resolveAlgorithms } from "./protocol/transport/algorithms.js"
import type { AlgorithmOptions } from "./protocol/transport/algorithms.js"
import type { KexSummary } from "./protocol/transport/transport.js"
import { DisconnectReason } from "./protocol/wire/errors.js"
import type { SshAuthMethod } from "./SshAuth.js"
import { awaitOpen } from "./SshChannel.js"
import type { ExitInfo, SshChannel } from "./SshChannel.js"
import type { SshAuthError } from "./SshError.js"
import { fromProtocolError, SshChannelError, SshConnectError, SshTransportError } from "./SshError.js"

export const VERSION = "0.1.0"

/** The server's host key, as the verifier sees it. */
export interface HostKeyInfo {
  readonly host: string
  readonly port: number
  /** The negotiated host key algorithm, e.g. "ssh-ed25519". */
  readonly algorithm: string
  /** The key blob (RFC 4253 §6.6). */
  readonly key: Uint8Array
  /** "SHA256:..." as `ssh-keygen -l` prints it. */
  readonly fingerprint: string
  /** The key hashed with the `hostHash` option's algorithm, in hex (as ssh2's hostVerifier receives it). */
  readonly hash?: string
  /**
   * Present when the server presented an OpenSSH host certificate (a `*-cert-v01@openssh.com`
   * algorithm; `key` is then the certificate blob). The server proved it holds the certified key;
   * whether a trusted CA signed it is the verifier's call (see `KnownHosts`).
   */
  readonly certificate?: SshCertificate
}

/**
 * Decides whether to trust a host key. Plain boolean or an Effect; an Effect that fails refuses
 * the key, and its error becomes the cause (and message) of the connection's `host-key-rejected` error.
 */
export type HostVerifier = (key: HostKeyInfo) => boolean | Effect.Effect<boolean, unknown>

/** Explicitly accepts any host key. Only for tests and throwaway hosts: it defeats MITM protection. */
export const acceptAnyHostKey: HostVerifier = () => true

export interface PtyOptions {
  readonly term?: string
  readonly rows?: number
  readonly cols?: number
  readonly width?: number
  readonly height?: number
  readonly modes?: TerminalModes
}

export interface SessionOptions {
  readonly env?: Readonly<Record<string, string>>
  /** Allocate a pseudo-terminal: `true` for the defaults (80x24 vt100), or its settings. */
  readonly pty?: boolean | PtyOptions
}

export interface ExecResult {
  readonly stdout: Uint8Array
  readonly stderr: Uint8Array
  readonly code: number | null
  readonly signal: string | null
}

export interface ConnectOptions {
  readonly host?: string
  readonly port?: number
  readonly username: string
  /** Methods tried in order after "none", each only if the server still accepts it. */
  readonly auth?: ReadonlyArray<SshAuthMethod>
  /** Required: verify the server's host key (see `acceptAnyHostKey` to opt out explicitly). */
  readonly hostVerifier: HostVerifier
  /** A node:crypto hash name ("sha256", "md5", ...): the verifier also gets the key's hex digest as `hash`. */
  readonly hostHash?: string
  readonly algorithms?: AlgorithmOptions
  /** Time allowed for connect + handshake + auth (default 20 s). */
  readonly readyTimeout?: Duration.DurationInput
  /** Interval of keepalive@openssh.com requests; 0 or absent disables them. */
  readonly keepaliveInterval?: Duration.DurationInput
  /** Unanswered keepalives before the connection is considered dead (default 3). */
  readonly keepaliveCountMax?: number
  /** An already connected duplex to run SSH over instead of TCP (e.g. a forwarded channel). */
  readonly sock?: Duplex
  /** Software version in our identification line. */
  readonly ident?: string
  readonly onBanner?: (message: string) => void
  /** Rekey after this many bytes (default 1 GiB) or this long (default 1 hour). */
  readonly rekeyBytes?: number
  readonly rekeyInterval?: Duration.DurationInput
}

/** An authenticated SSH connection. Closed when its scope closes. */
export interface SshConnection {
  readonly serverIdentification: string
  readonly algorithms: KexSummary
  readonly hostKey: HostKeyInfo
  /** Runs a command and collects its output and exit status. */
  readonly exec: (command: string, options?: SessionOptions & { readonly stdin?: Uint8Array | string }) => Effect.Effect<ExecResult, SshChannelError>
  /** Starts a command with stdin/stdout/stderr as a Sink and Streams; closed with the scope. */
  readonly spawn: (command: string, options?: SessionOptions) => Effect.Effect<SshProcess, SshChannelError, Scope.Scope>
  /** Starts a login shell. */
  readonly shell: (options?: SessionOptions) => Effect.Effect<SshProcess, SshChannelError, Scope.Scope>
  /** Starts a subsystem (e.g. "sftp"). */
  readonly subsystem: (name: string) => Effect.Effect<SshChannel, SshChannelError, Scope.Scope>
  /** Opens a direct-tcpip channel: a TCP connection made by the server on our behalf. */
  readonly forwardOut: (target: { readonly host: string; readonly port: number; readonly originHost?: string; readonly originPort?: number }) => Effect.Effect<SshChannel, SshChannelError, Scope.Scope>
  /** Opens a session channel with no request sent yet. */
  readonly openSession: Effect.Effect<SshChannel, SshChannelError, Scope.Scope>
  /** Starts a key re-exchange now. */
  readonly rekey: Effect.Effect<void>
  /** Tells the server no further sessions will be opened (no-more-sessions@openssh.com). */
  readonly noMoreSessions: Effect.Effect<void>
  /** Closes the connection (also done by the scope). */
  readonly close: Effect.Effect<void>
  /** Completes when the connection ends; fails with the reason if it ended abnormally. */
  readonly closed: Effect.Effect<void, SshTransportError>
}

/** A running remote command. */
export interface SshProcess extends SshChannel {
  /** Sends a signal ("TERM", "INT", ...). */
  readonly signal: (name: string) => Effect.Effect<void, SshChannelError>
  /** Tells the remote pty its new size. */
  readonly resize: (size: { readonly rows: number; readonly cols: number; readonly width?: number; readonly height?: number }) => Effect.Effect<void, SshChannelError>
}

export type ConnectError = SshConnectError | SshTransportError | SshAuthError

/**
 * Connects, verifies the host key, authenticates, and returns a connection bound to the
 * current scope.
 *
 * @example
 * const ssh = yield* SshClient.connect({ host, username, auth: [SshAuth.privateKey(key)], hostVerifier })
 * const { stdout } = yield* ssh.exec("uptime")
 */
export const connect = (options: ConnectOptions): Effect.Effect<SshConnection, ConnectError, Scope.Scope> =>
  Effect.gen(function* () {
    const host = options.host ?? "127.0.0.1"
    const port = options.port ?? 22
    const algorithms = yield* Effect.try({
      try: () => resolveAlgorithms(options.algorithms),
      catch: (cause) => new SshTransportError({ reason: "no-common-algorithm", message: (cause as Error).message, cause })
    })
    const runtime = yield* Effect.runtime<never>()
    const signals = yield* Queue.unbounded<AuthSignal>()
    const timeout = Duration.decode(options.readyTimeout ?? "20 seconds")

    const handshake = Effect.gen(function* () {
      const tcp = options.sock ? undefined : yield* dial(host, port)
      const socket = options.sock ?? tcp!.socket
      let serverSigAlgs: ReadonlyArray<string> | undefined
      let summary: KexSummary | undefined
      let hostKey: HostKeyInfo | undefined
      let hostKeyFailure: unknown

      const driver = new Driver(
        socket,
        {
          role: "client",
          software: options.ident ?? `effect_ssh_${VERSION}`,
          algorithms,
          ...(options.rekeyBytes !== undefined ? { rekeyBytes: options.rekeyBytes } : {}),
          ...(options.rekeyInterval !== undefined ? { rekeyIntervalMs: Duration.toMillis(options.rekeyInterval) } : {})
        },
        {
          onEvent: (event, d) => {
            switch (event._tag) {
              case "HostKey": {
                const certificate = certificateOf(event.key)
                const info: HostKeyInfo = {
                  host,
                  port,
                  algorithm: event.algorithm,
                  key: event.key,
                  fingerprint: fingerprint(event.key),
                  ...(options.hostHash ? { hash: createHash(options.hostHash).update(event.key).digest("hex") } : {}),
                  ...(certificate ? { certificate } : {})
                }
                hostKey = info
                const verdict = Effect.suspend(() => {
                  const r = options.hostVerifier(info)
                  return typeof r === "boolean" ? Effect.succeed(r) : r
                }).pipe(
                  Effect.catchAllCause((cause) => {
                    hostKeyFailure = Cause.squash(cause)
                    return Effect.succeed(false)
                  })
                )
                Runtime.runFork(runtime)(verdict).addObserver((exit) =>
                  d.run((e) => e.transport.acceptHostKey(Exit.isSuccess(exit) && exit.value))
                )
                return
              }
              case "KexDone":
                summary = event.summary
                return
              case "ExtInfo": {
                const algs = event.extensions.get("server-sig-algs")
                if (algs) serverSigAlgs = new TextDecoder().decode(algs).split(",")
                return
              }
              case "Auth":
                Queue.unsafeOffer(signals, event.event)
                return
              case "Closed":
                Queue.unsafeOffer(signals, event.error ? { _tag: "Closed", error: event.error } : { _tag: "Closed" })
                return
            }
          }
        },
        tcp?.reader
      )
      yield* Effect.addFinalizer(() =>
        Effect.async<void>((resume) => {
          driver.disconnect(DisconnectReason.BY_APPLICATION, "closed by the user")
          driver.onClose(() => resume(Effect.void))
        })
      )
      yield* authenticate(
        {
          driver,
          username: options.username,
          signals,
          serverSigAlgs: () => serverSigAlgs,
          openAgent: (path) => new OpenSSHAgentClient(path),
          ...(options.onBanner ? { onBanner: options.onBanner } : {})
        },
        options.auth ?? []
      ).pipe(
        Effect.mapError((e) =>
          e._tag === "SshTransportError" && e.reason === "host-key-rejected" && hostKeyFailure instanceof Error
            ? new SshTransportError({ reason: "host-key-rejected", message: hostKeyFailure.message, cause: hostKeyFailure })
            : e
        )
      )
      return makeConnection(driver, summary!, hostKey!)
    })

    const connection = yield* handshake.pipe(
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new SshConnectError({ reason: "timeout", message: `no authenticated connection to ${host}:${port} within ${Duration.format(timeout)}` })
      })
    )
    const ping = keepalive(connection.driver, options.keepaliveInterval, options.keepaliveCountMax)
    if (ping) yield* Effect.forkScoped(ping)
    return connection
  })

function certificateOf(blob: Uint8Array): SshCertificate | undefined {
  try {
    return parsePublicKeyBlob(blob).certificate
  } catch {
    return undefined
  }
}

function dial(host: string, port: number): Effect.Effect<{ socket: net.Socket; reader: SocketReader }, SshConnectError, Scope.Scope> {
  return Effect.acquireRelease(
    Effect.async<{ socket: net.Socket; reader: SocketReader }, SshConnectError>((resume) => {
      const tcp = connectTcp(host, port)
      const socket = tcp.socket
      const onError = (e: NodeJS.ErrnoException) => {
        socket.destroy()
        const reason = e.code === "ECONNREFUSED" ? "refused" : e.code === "ENOTFOUND" || e.code === "EAI_AGAIN" ? "dns" : "socket"
        resume(Effect.fail(new SshConnectError({ reason, message: `cannot connect to ${host}:${port}: ${e.message}`, cause: e })))
      }
      socket.once("error", onError)
      socket.once("connect", () => {
        socket.off("error", onError)
        resume(Effect.succeed(tcp))
      })
      return Effect.sync(() => socket.destroy())
    }),
    (tcp) => Effect.sync(() => tcp.socket.destroy())
  )
}


function makeConnection(driver: Driver, algorithms: KexSummary, hostKey: HostKeyInfo): SshConnection & { readonly driver: Driver } {
  const open = (type: string, data?: Uint8Array) =>
    Effect.acquireRelease(
      Effect.suspend(() => {
        const state = driver.closed ? undefined : driver.openChannel(type, data)
        if (state === undefined || !("id" in state && "stdout" in state)) {
          return Effect.fail(
            new SshChannelError({
              reason: "connection-closed",
              message: state ? `cannot open a ${type} channel: ${state.message}` : `cannot open a ${type} channel: the connection is closed`
            })
          )
        }
        return awaitOpen(state)
      }),
      (channel) => channel.close
    )

  const session = (options: SessionOptions, start: (channel: SshChannel) => Effect.Effect<void, SshChannelError>) =>
    Effect.gen(function* () {
      const channel = yield* open("session")
      for (const [name, value] of Object.entries(options.env ?? {})) {
        // servers commonly refuse env; like OpenSSH, that is not fatal
        yield* channel.request("env", encodeEnvRequest({ name, value }), false)
      }
      if (options.pty) {
        const p = options.pty === true ? {} : options.pty
        yield* channel.request(
          "pty-req",
          encodePtyRequest({
            term: p.term ?? "vt100",
            cols: p.cols ?? 80,
            rows: p.rows ?? 24,
            width: p.width ?? 640,
            height: p.height ?? 480,
            modes: p.modes ?? {}
          })
        )
      }
      yield* start(channel)
      return asProcess(channel)
    })

  const spawn = (command: string, opts: SessionOptions = {}) =>
    session(opts, (c) => c.request("exec", encodeExecRequest(command)))

  const closed = Effect.async<void, SshTransportError>((resume) =>
    driver.onClose(() => {
      const e = driver.closeError
      resume(e && e.kind !== "disconnected" ? Effect.fail(fromProtocolError(e)) : Effect.void)
    })
  )

  const connection: SshConnection & { driver: Driver } = {
    driver,
    serverIdentification: driver.endpoint.transport.peerIdentification ?? "",
    algorithms,
    hostKey,
    spawn,
    exec: (command, opts = {}) =>
      Effect.scoped(
        Effect.gen(function* () {
          const proc = yield* spawn(command, opts)
          const input = opts.stdin === undefined ? proc.end : Effect.zipRight(proc.write(opts.stdin), proc.end)
          const [stdout, stderr] = yield* Effect.all([collect(proc.stdout), collect(proc.stderr), input], { concurrency: "unbounded" })
          const exit: ExitInfo = yield* proc.exit
          return { stdout, stderr, code: exit.code, signal: exit.signal }
        })
      ),
    shell: (opts = {}) => session(opts, (c) => c.request("shell", undefined)),
    subsystem: (name) => session({}, (c) => c.request("subsystem", encodeSubsystemRequest(name))),
    forwardOut: (target) =>
      open(
        "direct-tcpip",
        encodeDirectTcpip({
          host: target.host,
          port: target.port,
          originatorAddress: target.originHost ?? "127.0.0.1",
          originatorPort: target.originPort ?? 0
        })
      ),
    openSession: open("session"),
    rekey: Effect.sync(() => driver.run((e) => e.transport.rekey())),
    noMoreSessions: Effect.sync(() => driver.globalRequest("no-more-sessions@openssh.com", undefined)),
    close: Effect.async<void>((resume) => {
      driver.disconnect(DisconnectReason.BY_APPLICATION, "closed by the user")
      driver.onClose(() => resume(Effect.void))
    }),
    closed
  }
  return connection
}

function asProcess(channel: SshChannel): SshProcess {
  return {
    ...channel,
    signal: (name) => channel.request("signal", encodeSignalRequest(name), false),
    resize: (size) =>
      channel.request(
        "window-change",
        encodeWindowChange({ cols: size.cols, rows: size.rows, width: size.width ?? 0, height: size.height ?? 0 }),
        false
      )
  }
}

/** Collects a byte stream into one buffer. */
export function collect<E>(stream: Stream.Stream<Uint8Array, E>): Effect.Effect<Uint8Array, E> {
  return Stream.runFold(stream, [] as Uint8Array[], (acc, chunk) => {
    acc.push(chunk)
    return acc
  }).pipe(Effect.map((parts) => Buffer.concat(parts)))
}

/** The client as a service, for programs that connect to one configured host. */
export class SshClient extends Context.Tag("effect-ssh/SshClient")<SshClient, SshConnection>() {}

/** A layer holding one connection for the lifetime of the layer. */
export const layer = (options: ConnectOptions): Layer.Layer<SshClient, ConnectError> => Layer.scoped(SshClient, connect(options))
