import { ClientAuth } from "./auth/client.js"
import type { ClientAuthEvent } from "./auth/client.js"
import { ServerAuth } from "./auth/server.js"
import type { ServerAuthEvent, ServerAuthLimits } from "./auth/server.js"
import { Connection, ConnectionUsageError } from "./connection/connection.js"
import type { ConnectionEvent, ConnectionLimits } from "./connection/connection.js"
import { Transport } from "./transport/transport.js"
import type { TransportConfig, TransportEvent } from "./transport/transport.js"
import { ProtocolError } from "./wire/errors.js"
import { Msg } from "./wire/messages.js"

/** Everything one side of an SSH connection can observe, in the order it happened. */
export type EndpointEvent =
  | Exclude<TransportEvent, { readonly _tag: "Payload" }>
  | { readonly _tag: "Auth"; readonly event: ClientAuthEvent }
  | { readonly _tag: "ServerAuth"; readonly event: ServerAuthEvent }
  | { readonly _tag: "Connection"; readonly event: ConnectionEvent }

export interface EndpointConfig extends TransportConfig {
  readonly connection?: Partial<ConnectionLimits>
  readonly auth?: ServerAuthLimits
}

/**
 * One side of an SSH connection: the transport with the authentication and connection
 * layers stacked on it, routing each payload by message number (RFC 4250 §4.1.2).
 * Still sans-IO: bytes in through `receive`, bytes out through `pollTransmit`.
 */
export class Endpoint {
  readonly transport: Transport
  readonly connection: Connection
  private clientAuthValue: ClientAuth | undefined
  private serverAuthValue: ServerAuth | undefined
  /** The server's authentication is over and its ServerAuth dropped: an idle connection keeps none of it. */
  private serverAuthFinished = false
  private readonly events: EndpointEvent[] = []

  constructor(private readonly config: EndpointConfig) {
    this.transport = new Transport(config)
    this.connection = new Connection(
      (p) => this.transport.send(p),
      config.connection,
      (head, data) => this.transport.sendGathered(head, data)
    )
  }

  get role(): "client" | "server" {
    return this.config.role
  }

  /** The client's authentication layer; available once the first key exchange is done. */
  get clientAuth(): ClientAuth {
    if (!this.clientAuthValue) throw new Error("authentication is not available before the key exchange")
    return this.clientAuthValue
  }

  get serverAuth(): ServerAuth {
    if (!this.serverAuthValue) {
      throw new Error(this.serverAuthFinished ? "authentication is over" : "authentication is not available before the key exchange")
    }
    return this.serverAuthValue
  }

  get authenticated(): boolean {
    return this.clientAuthValue?.authenticated ?? this.serverAuthValue?.authenticated ?? this.serverAuthFinished
  }

  /** Bytes read from the peer; `given` when the caller will not reuse them (Transport.receive). */
  receive(bytes: Uint8Array, given = false): void {
    this.transport.receive(bytes, given)
    this.drainTransport()
  }

  poll(): EndpointEvent | undefined {
    this.drainTransport()
    this.drainConnection()
    return this.events.shift()
  }

  pollTransmit(): Uint8Array | undefined {
    return this.transport.pollTransmit()
  }

  pollTransmitParts(): ReadonlyArray<Uint8Array> {
    return this.transport.pollTransmitParts()
  }

  /**
   * Runs a command on a layer. A protocol violation it uncovers ends the connection; a
   * misuse (ConnectionUsageError: a closed channel, a limit reached) is returned and
   * changes nothing.
   */
  guard(command: () => void): ConnectionUsageError | undefined {
    let usage: ConnectionUsageError | undefined
    try {
      command()
    } catch (e) {
      if (e instanceof ConnectionUsageError) usage = e
      else this.transport.abort(e)
    }
    this.drainTransport()
    return usage
  }

  private drainTransport(): void {
    for (;;) {
      const event = this.transport.poll()
      if (event === undefined) return
      if (event._tag !== "Payload") {
        if (event._tag === "KexDone" && event.summary.initial) this.startAuth()
        this.events.push(event)
        continue
      }
      try {
        this.route(event.payload, event.sequence)
      } catch (e) {
        this.transport.abort(e)
      }
    }
  }

  private startAuth(): void {
    const sessionId = this.transport.sessionId!
    const send = (p: Uint8Array) => this.transport.send(p)
    if (this.config.role === "client") {
      this.clientAuthValue = new ClientAuth(send, sessionId)
      this.clientAuthValue.requestService()
    } else {
      this.serverAuthValue = new ServerAuth(send, sessionId, this.config.auth, () => {
        this.transport.authenticated()
        this.releaseFinishedServerAuth()
      })
    }
  }

  private releaseFinishedServerAuth(): void {
    if (!this.serverAuthValue?.finished) return
    this.serverAuthValue = undefined
    this.serverAuthFinished = true
  }

  private route(payload: Uint8Array, sequence: number): void {
    const type = payload[0]!
    if (type === Msg.SERVICE_REQUEST || type === Msg.SERVICE_ACCEPT || (type >= 50 && type <= 79)) {
      if (this.clientAuthValue) {
        const event = this.clientAuthValue.handle(payload)
        if (event._tag === "Success") this.transport.authenticated()
        this.events.push({ _tag: "Auth", event })
      } else if (this.serverAuthValue) {
        const event = this.serverAuthValue.handle(payload)
        if (event) this.events.push({ _tag: "ServerAuth", event })
        this.releaseFinishedServerAuth()
      } else if (this.serverAuthFinished) {
        ServerAuth.handleAfterSuccess(payload)
      }
      return
    }
    if (type >= 80 && type <= 127) {
      if (!this.authenticated) throw new ProtocolError("protocol", `connection message ${type} before authentication`)
      this.connection.handle(payload)
      this.drainConnection()
      return
    }
    this.transport.unimplemented(sequence)
  }

  private drainConnection(): void {
    for (let e = this.connection.poll(); e !== undefined; e = this.connection.poll()) {
      this.events.push({ _tag: "Connection", event: e })
    }
  }
}
