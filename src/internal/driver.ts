import * as net from "node:net"
import type { Duplex } from "node:stream"
import { ConnectionUsageError } from "../protocol/connection/connection.js"
import type { ConnectionEvent } from "../protocol/connection/connection.js"
import { Endpoint } from "../protocol/endpoint.js"
import type { EndpointConfig, EndpointEvent } from "../protocol/endpoint.js"
import type { ProtocolError } from "../protocol/wire/errors.js"
import { Msg } from "../protocol/wire/messages.js"
import { ChannelState } from "./channelState.js"

const IGNORE = Uint8Array.of(Msg.IGNORE, 0, 0, 0, 0)

/** Where a socket's reads go; see `readIntoSharedBuffer`. */
export interface SocketReader {
  attach(receive: (chunk: Uint8Array) => void): void
}

/**
 * One read buffer for every TCP socket of the process. A socket's "data" event hands out a new
 * buffer of up to 64 KiB per read: a bulk transfer then allocates as many bytes as it moves, and
 * the GC has to free them. Reads into this buffer allocate nothing and carry up to 256 KiB, and an
 * idle connection holds no buffer of its own. Sharing it is safe: libuv calls back each read
 * before it makes the next one on this thread, and the transport copies what it keeps before
 * `receive` returns.
 */
const sharedReadBuffer = Buffer.allocUnsafe(256 * 1024)

/** Socket options (`onread`) that deliver reads through the shared buffer to a `SocketReader`. */
function readIntoSharedBuffer(): { readonly onread: net.OnReadOpts; readonly reader: SocketReader } {
  let target: ((chunk: Uint8Array) => void) | undefined
  let early: Uint8Array[] = []
  const onread: net.OnReadOpts = {
    buffer: sharedReadBuffer,
    callback: (n, buf) => {
      const chunk = buf.subarray(0, n)
      if (target) target(chunk)
      else early.push(Uint8Array.from(chunk))
      return true
    }
  }
  const reader: SocketReader = {
    attach: (receive) => {
      target = receive
      for (const chunk of early) receive(chunk)
      early = []
    }
  }
  return { onread, reader }
}

/** Connects over TCP, reading into the shared buffer. */
export function connectTcp(host: string, port: number): { readonly socket: net.Socket; readonly reader: SocketReader } {
  const { onread, reader } = readIntoSharedBuffer()
  return { socket: net.connect({ host, port, noDelay: true, onread }), reader }
}

/**
 * Takes over a socket that a `net.Server` accepted with `pauseOnConnect`, reading into the shared
 * buffer. Node offers `onread` only to sockets it creates for `connect`, so the accepted socket's
 * handle moves to a new socket made with it, and the old one, without a handle, is let go (the
 * server then no longer counts the connection; nothing here asks it to). Should a Node version not
 * keep the handle there, the socket is used as it is, with "data" events.
 */
export function adoptAccepted(accepted: net.Socket): { readonly socket: net.Socket; readonly reader?: SocketReader } {
  const handle = (accepted as { _handle?: unknown })._handle
  if (handle === undefined || handle === null) {
    accepted.resume()
    return { socket: accepted }
  }
  ;(accepted as { _handle?: unknown })._handle = null
  const { onread, reader } = readIntoSharedBuffer()
  const socket = new net.Socket({ handle, onread } as net.SocketConstructorOpts)
  accepted.destroy()
  return { socket, reader }
}

export interface DriverHandlers {
  /** Everything but connection events, which the driver routes to channels itself. */
  readonly onEvent: (event: EndpointEvent, driver: Driver) => void
  /** A channel the peer wants to open; answer with `acceptChannel`/`rejectChannel`. */
  readonly onChannelOpen?: (event: Extract<ConnectionEvent, { _tag: "ChannelOpenRequest" }>, driver: Driver) => void
  /** A global request from the peer; answer with endpoint.connection.replyGlobalRequest in order. */
  readonly onGlobalRequest?: (event: Extract<ConnectionEvent, { _tag: "GlobalRequest" }>, driver: Driver) => void
}

/**
 * Runs one Endpoint over one socket: socket bytes go in synchronously, events are routed
 * to channel states, and everything the endpoint has to send leaves in one write per turn
 * of the event loop. No Effect per packet: Effect starts at the channel buffers.
 */
export class Driver {
  readonly endpoint: Endpoint
  readonly channels = new Map<number, ChannelState>()
  private flushScheduled = false
  private socketBlocked = false
  private drainWaiters: Array<() => void> = []
  private globalReplies: Array<(success: boolean, data: Uint8Array) => void> = []
  private closedError: ProtocolError | undefined
  private closedValue = false
  private readonly closeWaiters: Array<() => void> = []
  private timer: NodeJS.Timeout | undefined
  private timerDue: number | undefined
  private acknowledgeSilentReads: boolean

  constructor(
    readonly socket: Duplex,
    config: EndpointConfig,
    private readonly handlers: DriverHandlers,
    /** A socket made by `connectTcp` delivers its reads here instead of through "data" events. */
    reader?: SocketReader
  ) {
    this.endpoint = new Endpoint(config)
    this.acknowledgeSilentReads = config.role === "server"
    const s = socket as Duplex & { setNoDelay?: (v: boolean) => void }
    s.setNoDelay?.(true)
    // the listeners call methods: fewer closures kept alive by every idle connection
    // the shared read buffer is reused; a "data" event's chunk is new each time and ours to keep
    if (reader) reader.attach((chunk) => this.receive(chunk, false))
    else socket.on("data", (chunk: Uint8Array) => this.receive(chunk, true))
    socket.on("drain", () => {
      this.socketBlocked = false
      const waiters = this.drainWaiters
      this.drainWaiters = []
      for (const w of waiters) w()
    })
    socket.on("end", () => this.lost("the peer closed the connection"))
    socket.on("close", () => this.lost("the connection closed"))
    socket.on("error", (e: Error) => this.lost(`socket error: ${e.message}`))
    this.pump()
  }

  private receive(chunk: Uint8Array, given: boolean): void {
    this.endpoint.receive(chunk, given)
    if (this.acknowledgeSilentReads) this.acknowledgeSilentRead()
    this.pump()
  }

  /**
   * OpenSSH's client leaves Nagle's algorithm on until a session starts: after its NEWKEYS it
   * holds the SERVICE_REQUEST until that segment is ACKed, and our kernel delays the ACK ~40 ms
   * when we answer nothing. Before authentication, a read that leaves the server silent gets an
   * IGNORE, which carries the ACK at once (not during the first key exchange: strict kex allows
   * only kex messages there).
   */
  private acknowledgeSilentRead(): void {
    const { transport } = this.endpoint
    if (this.endpoint.authenticated) {
      this.acknowledgeSilentReads = false
      return
    }
    if (transport.pendingTransmit === 0 && transport.sessionId !== undefined && !transport.kexInProgress) {
      this.endpoint.guard(() => transport.send(IGNORE))
    }
  }

  private lost(description: string): void {
    this.endpoint.transport.connectionLost(description)
    this.pump()
  }

  get closed(): boolean {
    return this.closedValue
  }
  get closeError(): ProtocolError | undefined {
    return this.closedError
  }

  /** Resolves once the connection is closed, for whatever reason. */
  onClose(callback: () => void): void {
    if (this.closedValue) callback()
    else this.closeWaiters.push(callback)
  }

  /**
   * Runs a command against the endpoint, then processes its consequences. Returns false
   * when the command could not be carried out (connection closed, channel gone, limit hit).
   */
  run(command: (endpoint: Endpoint) => void): boolean {
    if (this.closedValue) return false
    const usage = this.endpoint.guard(() => command(this.endpoint))
    this.pump()
    return usage === undefined
  }

  /** Waits until the socket has room again (after a write returned false). */
  whenWritable(callback: () => void): void {
    if (!this.socketBlocked || this.closedValue) callback()
    else this.drainWaiters.push(callback)
  }

  get writable(): boolean {
    return !this.socketBlocked
  }

  /** Opens a channel of `type` and tracks its state. */
  openChannel(type: string, data?: Uint8Array): ChannelState | ConnectionUsageError {
    let state: ChannelState | undefined
    const usage = this.endpoint.guard(() => {
      const id = this.endpoint.connection.openChannel(type, data)
      state = new ChannelState(this, id, type)
      this.channels.set(id, state)
    })
    this.pump()
    return state ?? usage ?? new ConnectionUsageError("channel-state", "the connection is closed")
  }

  /** Accepts a channel the peer opened and tracks it. */
  acceptChannel(id: number, type: string): ChannelState {
    const state = new ChannelState(this, id, type)
    state.opened()
    this.channels.set(id, state)
    this.run((e) => e.connection.acceptChannel(id))
    return state
  }

  /** Sends a global request; the callback gets the reply (or false when the connection closes). */
  globalRequest(name: string, data: Uint8Array | undefined, onReply?: (success: boolean, data: Uint8Array) => void): void {
    this.run((e) => {
      e.connection.globalRequest(name, onReply !== undefined, data)
      if (onReply) this.globalReplies.push(onReply)
    })
  }

  /** Disconnects politely and closes the socket once the DISCONNECT is written. */
  disconnect(reason?: number, description?: string): void {
    if (this.closedValue) return
    this.endpoint.transport.disconnect(reason, description)
    this.pump()
  }

  /** Processes every pending event and writes what the endpoint has to send. */
  pump(): void {
    for (let event = this.endpoint.poll(); event !== undefined; event = this.endpoint.poll()) {
      try {
        if (event._tag === "Connection") this.routeConnection(event.event)
        else if (event._tag === "Closed") this.onClosed(event)
        else this.handlers.onEvent(event, this)
      } catch (e) {
        // a malformed request body, found while routing: the peer broke the protocol
        this.endpoint.transport.abort(e)
      }
    }
    // most reads of a bulk transfer leave nothing to send: no microtask for those
    if (this.closedValue || this.endpoint.transport.pendingTransmit > 0) this.scheduleFlush()
    this.scheduleTimer()
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    // Everything produced in this turn leaves in one write.
    queueMicrotask(() => {
      this.flushScheduled = false
      this.flush()
    })
  }

  private flush(): void {
    const parts = this.endpoint.pollTransmitParts()
    if (this.closedValue) {
      if (this.socket.writable) {
        for (const p of parts) this.socket.write(p)
        this.socket.end()
      }
      return
    }
    if (parts.length === 0) return
    // corked writes of several packets leave in one writev, without concatenating them
    if (parts.length > 1) this.socket.cork()
    let room = true
    for (const p of parts) room = this.socket.write(p)
    if (parts.length > 1) this.socket.uncork()
    if (!room) this.socketBlocked = true
  }

  private scheduleTimer(): void {
    const due = this.endpoint.transport.pollTimeout()
    // re-arming a timer costs more than a packet: only when the deadline moved
    if (due === this.timerDue && (this.timer !== undefined || due === undefined)) return
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.timerDue = due
    if (due === undefined || this.closedValue) return
    this.timer = setTimeout(
      () => {
        this.timer = undefined
        this.timerDue = undefined
        this.run((e) => e.transport.handleTimeout(Date.now()))
      },
      Math.max(0, Math.min(due - Date.now(), 2 ** 31 - 1))
    )
    this.timer.unref()
  }

  private routeConnection(event: ConnectionEvent): void {
    switch (event._tag) {
      case "ChannelOpenRequest":
        if (this.handlers.onChannelOpen) this.handlers.onChannelOpen(event, this)
        else this.run((e) => e.connection.rejectChannel(event.id, 1, "channel type not supported"))
        return
      case "GlobalRequest":
        if (this.handlers.onGlobalRequest) this.handlers.onGlobalRequest(event, this)
        else if (event.wantReply) this.run((e) => e.connection.replyGlobalRequest(false))
        else if (event.name === "hostkeys-00@openssh.com") {
          // sshd announces its host keys right after auth, then holds its next small packet
          // (our channel's confirmation) under Nagle until that announcement is ACKed; any
          // packet from us carries the ACK now instead of after the ~40 ms delayed-ACK timer
          this.run((e) => e.transport.send(IGNORE))
        }
        return
      case "GlobalRequestReply":
        this.globalReplies.shift()?.(event.success, event.data)
        return
    }
    const channel = this.channels.get(event.id)
    if (!channel) return
    channel.handle(event)
    if (event._tag === "ChannelClose" || event._tag === "ChannelOpenFailed") this.channels.delete(event.id)
  }

  private onClosed(event: Extract<EndpointEvent, { _tag: "Closed" }>): void {
    if (this.closedValue) return
    const error = event.error
    this.closedValue = true
    this.closedError = error
    if (this.timer) clearTimeout(this.timer)
    for (const channel of this.channels.values()) channel.connectionClosed(error)
    this.channels.clear()
    for (const reply of this.globalReplies.splice(0)) reply(false, new Uint8Array(0))
    for (const w of this.drainWaiters.splice(0)) w()
    this.handlers.onEvent(event, this)
    for (const w of this.closeWaiters.splice(0)) w()
    // the DISCONNECT (if any) is flushed by the pending flush, which then ends the socket
    this.scheduleFlush()
    setTimeout(() => this.socket.destroy(), 1000).unref()
  }
}
