/**
 * The SSH connection protocol (RFC 4254) as a sans-IO machine, the same for client and
 * server: a channel table with flow control, channel requests and global requests.
 * Payloads with message numbers 80–100 go in through `handle`, events come out of `poll`,
 * and outgoing payloads leave through the `send` callback given to the constructor.
 */
import { ProtocolError, WireError } from "../wire/errors.js"
import { ChannelOpenFailure, Msg } from "../wire/messages.js"
import { concatBytes } from "../wire/writer.js"
import {
  decodeChannelData,
  decodeChannelExtendedData,
  decodeConnectionMessage,
  encodeDataHeader,
  encodeConnectionMessage,
  type ConnectionMessage
} from "./messages.js"

export interface ConnectionLimits {
  /** Channels open or being opened at once, in both directions together. */
  readonly maxChannels: number
  /** Our want-reply global requests awaiting a reply, and the peer's awaiting ours. */
  readonly maxPendingGlobalRequests: number
  /** The same, per channel, for channel requests. */
  readonly maxPendingChannelRequests: number
  /** The window we grant the peer on each channel. */
  readonly initialWindow: number
  /** The most data bytes per CHANNEL_DATA we accept (at most 256 KiB). */
  readonly maxPacket: number
  /** Queued outgoing bytes per channel at which `write` starts returning false. */
  readonly writeHighWaterMark: number
}

export const defaultConnectionLimits: ConnectionLimits = {
  maxChannels: 64,
  maxPendingGlobalRequests: 16,
  maxPendingChannelRequests: 16,
  initialWindow: 2 * 1024 * 1024,
  // Larger than OpenSSH's 32 KiB: peers that honour it (ssh2, effect-ssh) send bulk data in
  // fewer packets, and each packet costs a node:crypto cipher object on top of its bytes.
  maxPacket: 128 * 1024,
  writeHighWaterMark: 1024 * 1024
}

/**
 * The most data bytes per packet we offer to accept or send, whatever the peer advertises:
 * larger packets would not fit the transport's packet size limit (OpenSSH: 256 KiB).
 */
const MAX_PACKET_LIMIT = 256 * 1024
const UINT32_MAX = 0xffffffff
const EMPTY = new Uint8Array(0)

export type ConnectionEvent =
  /** The peer asks to open a channel; `id` is reserved for it until acceptChannel/rejectChannel. */
  | {
      readonly _tag: "ChannelOpenRequest"
      readonly id: number
      readonly type: string
      readonly remoteId: number
      readonly window: number
      readonly maxPacket: number
      readonly data: Uint8Array
    }
  | { readonly _tag: "ChannelOpened"; readonly id: number }
  /** Our open was refused; the id is free once this event has been polled. */
  | { readonly _tag: "ChannelOpenFailed"; readonly id: number; readonly reason: number; readonly description: string }
  /** A view into the received payload; call `consumed(id, data.length)` once it has been taken. */
  | { readonly _tag: "ChannelData"; readonly id: number; readonly data: Uint8Array }
  | { readonly _tag: "ChannelExtendedData"; readonly id: number; readonly dataType: number; readonly data: Uint8Array }
  | { readonly _tag: "ChannelEof"; readonly id: number }
  /** Both sides have sent CLOSE; the id is free once this event has been polled. */
  | { readonly _tag: "ChannelClose"; readonly id: number }
  /** If `wantReply`, answer with `replyRequest(id, ok)`, in the order the requests came. */
  | {
      readonly _tag: "ChannelRequest"
      readonly id: number
      readonly request: string
      readonly wantReply: boolean
      readonly data: Uint8Array
    }
  /** The reply to our oldest unanswered want-reply `sendRequest` on the channel. */
  | { readonly _tag: "ChannelRequestReply"; readonly id: number; readonly request: string; readonly success: boolean }
  /** The outgoing queue fell below the high water mark after `write` returned false. */
  | { readonly _tag: "ChannelDrain"; readonly id: number }
  /** If `wantReply`, answer with `replyGlobalRequest`, in the order the requests came. */
  | { readonly _tag: "GlobalRequest"; readonly name: string; readonly wantReply: boolean; readonly data: Uint8Array }
  /** The reply to our oldest unanswered want-reply `globalRequest` (`name` is that request's). */
  | { readonly _tag: "GlobalRequestReply"; readonly name: string; readonly success: boolean; readonly data: Uint8Array }

export interface ChannelInfo {
  readonly type: string
  readonly remoteWindow: number
  readonly localWindow: number
  readonly queued: number
  readonly eofReceived: boolean
  readonly eofSent: boolean
  readonly closing: boolean
}

export type ConnectionUsageErrorKind =
  | "unknown-channel"
  | "channel-state"
  | "channel-limit"
  | "request-limit"
  | "no-pending-request"
  | "invalid-argument"

/**
 * A command that cannot be carried out: a limit is reached, the channel is unknown or in the
 * wrong state (possibly closed by the peer while the caller was busy), or an argument is invalid.
 * Nothing is sent when this is thrown; the connection itself stays usable.
 */
export class ConnectionUsageError extends Error {
  override readonly name = "ConnectionUsageError"
  constructor(
    readonly kind: ConnectionUsageErrorKind,
    message: string
  ) {
    super(message)
  }
}

/**
 * opening: our CHANNEL_OPEN is unanswered. offered: the peer's CHANNEL_OPEN awaits our answer.
 * failed / closed: finished, kept until the ChannelOpenFailed / ChannelClose event is polled so
 * that the id cannot be reused while events for the old channel are still queued.
 */
type ChannelState = "opening" | "offered" | "open" | "failed" | "closed"

interface OutgoingChunk {
  readonly data: Uint8Array
  readonly dataType: number | undefined
  offset: number
}

interface Channel {
  readonly id: number
  readonly type: string
  state: ChannelState
  remoteId: number
  remoteWindow: number
  remoteMaxPacket: number
  localWindow: number
  /** Delivered in events, not yet reported by `consumed`. */
  unconsumed: number
  /** Consumed, not yet returned to the peer in a WINDOW_ADJUST. */
  unacknowledged: number
  queue: OutgoingChunk[]
  queued: number
  needDrain: boolean
  eofRequested: boolean
  eofSent: boolean
  eofReceived: boolean
  closeRequested: boolean
  closeSent: boolean
  /** Names of our want-reply requests awaiting replies, oldest first. */
  readonly sentRequests: string[]
  /** The peer's want-reply requests we have not answered yet. */
  repliesOwed: number
}

function validateLimits(limits: ConnectionLimits): ConnectionLimits {
  const check = (name: keyof ConnectionLimits, min: number, max: number): void => {
    const v = limits[name]
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(`connection limit ${name} must be an integer in [${min}, ${max}], got ${v}`)
    }
  }
  check("maxChannels", 1, UINT32_MAX)
  check("maxPendingGlobalRequests", 1, Number.MAX_SAFE_INTEGER)
  check("maxPendingChannelRequests", 1, Number.MAX_SAFE_INTEGER)
  check("initialWindow", 1, UINT32_MAX)
  check("maxPacket", 1, MAX_PACKET_LIMIT)
  check("writeHighWaterMark", 1, Number.MAX_SAFE_INTEGER)
  return limits
}

const connectionMessageNames = new Map<number, string>(
  Object.entries(Msg)
    .filter(([, n]) => n >= Msg.GLOBAL_REQUEST)
    .map(([name, n]) => [n, name])
)

function messageName(type: number | undefined): string {
  if (type === undefined) return "empty message"
  return connectionMessageNames.get(type) ?? `message ${type}`
}

/**
 * The channel table and request bookkeeping of one SSH connection.
 *
 * `send` must not call back into this object synchronously (the transport queues the payload).
 * Buffers given to `write` are kept by reference until sent: do not modify them afterwards.
 */
export class Connection {
  private readonly limits: ConnectionLimits
  private readonly channels: Array<Channel | undefined> = []
  private channelCount = 0
  private readonly events: ConnectionEvent[] = []
  private eventHead = 0
  private readonly sentGlobalRequests: string[] = []
  private globalRepliesOwed = 0

  /**
   * `sendData` takes a data message as its header and its bytes, so the transport can encrypt
   * the bytes where they lie; without it the two are joined and go through `send`.
   */
  constructor(
    private readonly send: (payload: Uint8Array) => void,
    limits?: Partial<ConnectionLimits>,
    private readonly sendData: (head: Uint8Array, data: Uint8Array) => void = (head, data) => send(concatBytes(head, data))
  ) {
    this.limits = validateLimits({ ...defaultConnectionLimits, ...limits })
  }

  /**
   * Feeds one payload (message number 80–100). Throws ProtocolError when the peer breaks the
   * protocol or sends a malformed message; the caller then disconnects with `error.reason`.
   */
  handle(payload: Uint8Array): void {
    const type = payload[0]
    try {
      if (type === Msg.CHANNEL_DATA) {
        const m = decodeChannelData(payload)
        this.onData(m.recipient, m.data, undefined)
      } else if (type === Msg.CHANNEL_EXTENDED_DATA) {
        const m = decodeChannelExtendedData(payload)
        this.onData(m.recipient, m.data, m.dataType)
      } else {
        this.onMessage(decodeConnectionMessage(payload))
      }
    } catch (e) {
      if (e instanceof WireError) {
        throw new ProtocolError("protocol", `malformed ${messageName(type)}: ${e.message}`)
      }
      throw e
    }
  }

  /** The next event, or undefined when there is none. */
  poll(): ConnectionEvent | undefined {
    if (this.eventHead === this.events.length) return undefined
    const event = this.events[this.eventHead]!
    this.eventHead++
    if (this.eventHead === this.events.length) {
      this.events.length = 0
      this.eventHead = 0
    }
    if (event._tag === "ChannelClose" || event._tag === "ChannelOpenFailed") this.free(event.id)
    return event
  }

  /** Sends CHANNEL_OPEN with our window and packet size; returns the local id of the channel. */
  openChannel(type: string, data: Uint8Array = EMPTY): number {
    const ch = this.allocate(type)
    if (ch === undefined) {
      throw new ConnectionUsageError("channel-limit", `cannot open a channel: ${this.limits.maxChannels} already in use`)
    }
    ch.state = "opening"
    this.emit({
      _tag: "ChannelOpen",
      channelType: type,
      sender: ch.id,
      window: this.limits.initialWindow,
      maxPacket: this.limits.maxPacket,
      data
    })
    return ch.id
  }

  /** Accepts the peer's channel announced by a ChannelOpenRequest event. */
  acceptChannel(id: number): void {
    const ch = this.offered(id)
    ch.state = "open"
    this.emit({
      _tag: "ChannelOpenConfirmation",
      recipient: ch.remoteId,
      sender: ch.id,
      window: this.limits.initialWindow,
      maxPacket: this.limits.maxPacket,
      data: EMPTY
    })
  }

  /** Refuses the peer's channel (reason: ChannelOpenFailure code); the id is free at once. */
  rejectChannel(id: number, reason: number, description = ""): void {
    const ch = this.offered(id)
    this.free(id)
    this.emit({ _tag: "ChannelOpenFailure", recipient: ch.remoteId, reason, description, language: "" })
  }

  /**
   * Queues data (extended data when `dataType` is given, 1 = stderr) and sends what the peer's
   * window and packet size allow now. Data may be written before the open is confirmed.
   * Returns false once the queue reaches the high water mark: wait for ChannelDrain.
   */
  write(id: number, data: Uint8Array, dataType?: number): boolean {
    const ch = this.known(id)
    if (ch.state !== "opening" && ch.state !== "open") {
      throw new ConnectionUsageError("channel-state", `cannot write to channel ${id}: it is ${ch.state}`)
    }
    if (ch.eofRequested || ch.closeRequested || ch.closeSent) {
      throw new ConnectionUsageError("channel-state", `cannot write to channel ${id} after EOF or close`)
    }
    if (dataType !== undefined && (!Number.isInteger(dataType) || dataType < 0 || dataType > UINT32_MAX)) {
      throw new ConnectionUsageError("invalid-argument", `invalid extended data type ${dataType}`)
    }
    if (data.length > 0) {
      ch.queue.push({ data, dataType, offset: 0 })
      ch.queued += data.length
      this.flush(ch)
    }
    if (ch.queued >= this.limits.writeHighWaterMark) {
      ch.needDrain = true
      return false
    }
    return true
  }

  /** The window each channel grants the peer at first, and tops up once half of it is consumed. */
  get initialWindow(): number {
    return this.limits.initialWindow
  }

  /**
   * Reports that the consumer has taken `bytes` of received data (ordinary and extended).
   * A WINDOW_ADJUST goes out once half the initial window has been taken.
   * Calls for a channel that is gone are ignored: the peer closed it meanwhile.
   */
  consumed(id: number, bytes: number): void {
    const ch = this.channels[id]
    if (ch === undefined || ch.state !== "open") return
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > ch.unconsumed) {
      throw new ConnectionUsageError(
        "invalid-argument",
        `channel ${id}: consumed ${bytes} bytes, but only ${ch.unconsumed} were delivered and not yet consumed`
      )
    }
    ch.unconsumed -= bytes
    if (ch.eofReceived || ch.closeSent) return
    ch.unacknowledged += bytes
    if (ch.unacknowledged >= this.limits.initialWindow / 2) {
      const adjust = ch.unacknowledged
      ch.unacknowledged = 0
      ch.localWindow += adjust
      this.emit({ _tag: "ChannelWindowAdjust", recipient: ch.remoteId, bytes: adjust })
    }
  }

  /** Sends EOF once the queued data has been sent. Idempotent; a no-op on a closed channel. */
  eof(id: number): void {
    const ch = this.known(id)
    if (ch.state === "offered") {
      throw new ConnectionUsageError("channel-state", `channel ${id} has not been accepted`)
    }
    if (ch.state !== "opening" && ch.state !== "open") return
    ch.eofRequested = true
    this.flush(ch)
  }

  /**
   * Closes the channel. By default the queued data is sent first, then EOF, then CLOSE;
   * with `force` the queue is dropped and CLOSE goes out now. The ChannelClose event follows
   * when the peer's CLOSE arrives. Idempotent; a no-op on a channel already closed.
   */
  close(id: number, force = false): void {
    const ch = this.known(id)
    if (ch.state === "offered") {
      throw new ConnectionUsageError("channel-state", `channel ${id} has not been accepted: reject it instead`)
    }
    if (ch.state !== "opening" && ch.state !== "open") return
    if (force) {
      ch.queue = []
      ch.queued = 0
    } else {
      ch.eofRequested = true
    }
    ch.closeRequested = true
    this.flush(ch)
  }

  /** Sends a channel request; with `wantReply` a ChannelRequestReply event answers it, in order. */
  sendRequest(id: number, request: string, wantReply: boolean, data: Uint8Array = EMPTY): void {
    const ch = this.known(id)
    if (ch.state !== "open" || ch.closeRequested || ch.closeSent) {
      const state = ch.state === "open" ? "closing" : ch.state
      throw new ConnectionUsageError("channel-state", `cannot send "${request}" on channel ${id}: it is ${state}`)
    }
    if (wantReply) {
      if (ch.sentRequests.length >= this.limits.maxPendingChannelRequests) {
        throw new ConnectionUsageError(
          "request-limit",
          `channel ${id}: ${ch.sentRequests.length} requests already await a reply`
        )
      }
      ch.sentRequests.push(request)
    }
    this.emit({ _tag: "ChannelRequest", recipient: ch.remoteId, request, wantReply, data })
  }

  /**
   * Answers the peer's oldest unanswered want-reply channel request. Ignored when the channel
   * is closing or gone (no reply is due then).
   */
  replyRequest(id: number, success: boolean): void {
    const ch = this.channels[id]
    if (ch === undefined || ch.state !== "open" || ch.closeSent) return
    if (ch.repliesOwed === 0) {
      throw new ConnectionUsageError("no-pending-request", `channel ${id} has no request awaiting a reply`)
    }
    ch.repliesOwed--
    this.emit({ _tag: success ? "ChannelSuccess" : "ChannelFailure", recipient: ch.remoteId })
  }

  /** Sends a global request; with `wantReply` a GlobalRequestReply event answers it, in order. */
  globalRequest(name: string, wantReply: boolean, data: Uint8Array = EMPTY): void {
    if (wantReply) {
      if (this.sentGlobalRequests.length >= this.limits.maxPendingGlobalRequests) {
        throw new ConnectionUsageError(
          "request-limit",
          `${this.sentGlobalRequests.length} global requests already await a reply`
        )
      }
      this.sentGlobalRequests.push(name)
    }
    this.emit({ _tag: "GlobalRequest", name, wantReply, data })
  }

  /** Answers the peer's oldest unanswered want-reply global request. */
  replyGlobalRequest(success: boolean, data: Uint8Array = EMPTY): void {
    if (this.globalRepliesOwed === 0) {
      throw new ConnectionUsageError("no-pending-request", "no global request awaits a reply")
    }
    this.globalRepliesOwed--
    this.emit(success ? { _tag: "RequestSuccess", data } : { _tag: "RequestFailure" })
  }

  /** A snapshot of a channel's flow-control state, or undefined for a free id. */
  channelInfo(id: number): ChannelInfo | undefined {
    const ch = this.channels[id]
    if (ch === undefined) return undefined
    return {
      type: ch.type,
      remoteWindow: ch.remoteWindow,
      localWindow: ch.localWindow,
      queued: ch.queued,
      eofReceived: ch.eofReceived,
      eofSent: ch.eofSent,
      closing: ch.closeRequested || ch.closeSent || ch.state === "closed" || ch.state === "failed"
    }
  }

  private onData(recipient: number, data: Uint8Array, dataType: number | undefined): void {
    const ch = this.target(recipient, dataType === undefined ? "CHANNEL_DATA" : "CHANNEL_EXTENDED_DATA")
    // Data the peer sent before our CLOSE reached it: nobody wants it any more.
    if (ch.closeSent) return
    if (ch.eofReceived) throw new ProtocolError("protocol", `channel ${ch.id}: data after EOF`)
    const n = data.length
    if (n > this.limits.maxPacket) {
      throw new ProtocolError(
        "protocol",
        `channel ${ch.id}: ${n} data bytes in one packet, more than the maximum ${this.limits.maxPacket}`
      )
    }
    if (n > ch.localWindow) {
      throw new ProtocolError(
        "protocol",
        `channel ${ch.id}: ${n} data bytes sent beyond the window of ${ch.localWindow} bytes`
      )
    }
    if (n === 0) return
    ch.localWindow -= n
    ch.unconsumed += n
    this.events.push(
      dataType === undefined
        ? { _tag: "ChannelData", id: ch.id, data }
        : { _tag: "ChannelExtendedData", id: ch.id, dataType, data }
    )
  }

  private onMessage(msg: ConnectionMessage): void {
    switch (msg._tag) {
      case "GlobalRequest":
        if (msg.wantReply) {
          if (this.globalRepliesOwed >= this.limits.maxPendingGlobalRequests) {
            throw new ProtocolError("protocol", `more than ${this.globalRepliesOwed} global requests await a reply`)
          }
          this.globalRepliesOwed++
        }
        this.events.push({ _tag: "GlobalRequest", name: msg.name, wantReply: msg.wantReply, data: msg.data })
        return
      case "RequestSuccess":
      case "RequestFailure": {
        const name = this.sentGlobalRequests.shift()
        if (name === undefined) throw new ProtocolError("protocol", "global request reply without a request")
        const success = msg._tag === "RequestSuccess"
        this.events.push({ _tag: "GlobalRequestReply", name, success, data: success ? msg.data : EMPTY })
        return
      }
      case "ChannelOpen":
        return this.onOpen(msg)
      case "ChannelOpenConfirmation": {
        const ch = this.opening(msg.recipient, "CHANNEL_OPEN_CONFIRMATION")
        ch.state = "open"
        ch.remoteId = msg.sender
        ch.remoteWindow = msg.window
        ch.remoteMaxPacket = msg.maxPacket
        this.events.push({ _tag: "ChannelOpened", id: ch.id })
        this.flush(ch)
        return
      }
      case "ChannelOpenFailure": {
        const ch = this.opening(msg.recipient, "CHANNEL_OPEN_FAILURE")
        ch.state = "failed"
        ch.queue = []
        ch.queued = 0
        this.events.push({ _tag: "ChannelOpenFailed", id: ch.id, reason: msg.reason, description: msg.description })
        return
      }
      case "ChannelWindowAdjust": {
        const ch = this.target(msg.recipient, "CHANNEL_WINDOW_ADJUST")
        if (ch.closeSent) return
        const window = ch.remoteWindow + msg.bytes
        if (window > UINT32_MAX) {
          throw new ProtocolError("protocol", `channel ${ch.id}: WINDOW_ADJUST takes the window past 2^32-1`)
        }
        ch.remoteWindow = window
        this.flush(ch)
        return
      }
      case "ChannelData":
        return this.onData(msg.recipient, msg.data, undefined)
      case "ChannelExtendedData":
        return this.onData(msg.recipient, msg.data, msg.dataType)
      case "ChannelEof": {
        const ch = this.target(msg.recipient, "CHANNEL_EOF")
        if (ch.closeSent || ch.eofReceived) return
        ch.eofReceived = true
        this.events.push({ _tag: "ChannelEof", id: ch.id })
        return
      }
      case "ChannelClose": {
        const ch = this.target(msg.recipient, "CHANNEL_CLOSE")
        ch.state = "closed"
        ch.queue = []
        ch.queued = 0
        if (!ch.closeSent) {
          ch.closeSent = true
          this.emit({ _tag: "ChannelClose", recipient: ch.remoteId })
        }
        this.events.push({ _tag: "ChannelClose", id: ch.id })
        return
      }
      case "ChannelRequest": {
        const ch = this.target(msg.recipient, "CHANNEL_REQUEST")
        if (ch.closeSent) return
        if (msg.wantReply) {
          if (ch.repliesOwed >= this.limits.maxPendingChannelRequests) {
            throw new ProtocolError("protocol", `channel ${ch.id}: more than ${ch.repliesOwed} requests await a reply`)
          }
          ch.repliesOwed++
        }
        this.events.push({
          _tag: "ChannelRequest",
          id: ch.id,
          request: msg.request,
          wantReply: msg.wantReply,
          data: msg.data
        })
        return
      }
      case "ChannelSuccess":
      case "ChannelFailure": {
        const ch = this.target(msg.recipient, "channel request reply")
        const request = ch.sentRequests.shift()
        if (request === undefined) {
          throw new ProtocolError("protocol", `channel ${ch.id}: request reply without a request`)
        }
        if (ch.closeSent) return
        this.events.push({ _tag: "ChannelRequestReply", id: ch.id, request, success: msg._tag === "ChannelSuccess" })
        return
      }
    }
  }

  private onOpen(msg: Extract<ConnectionMessage, { _tag: "ChannelOpen" }>): void {
    const ch = this.allocate(msg.channelType)
    if (ch === undefined) {
      this.emit({
        _tag: "ChannelOpenFailure",
        recipient: msg.sender,
        reason: ChannelOpenFailure.RESOURCE_SHORTAGE,
        description: "too many channels",
        language: ""
      })
      return
    }
    ch.state = "offered"
    ch.remoteId = msg.sender
    ch.remoteWindow = msg.window
    ch.remoteMaxPacket = msg.maxPacket
    this.events.push({
      _tag: "ChannelOpenRequest",
      id: ch.id,
      type: msg.channelType,
      remoteId: msg.sender,
      window: msg.window,
      maxPacket: msg.maxPacket,
      data: msg.data
    })
  }

  /** Sends queued data as far as window and packet size allow, then a pending EOF and CLOSE. */
  private flush(ch: Channel): void {
    if (ch.state !== "open" || ch.closeSent) return
    const chunkMax = Math.min(ch.remoteMaxPacket, MAX_PACKET_LIMIT)
    while (ch.queue.length > 0 && ch.remoteWindow > 0 && chunkMax > 0) {
      const head = ch.queue[0]!
      const n = Math.min(head.data.length - head.offset, ch.remoteWindow, chunkMax)
      const part = head.data.subarray(head.offset, head.offset + n)
      head.offset += n
      if (head.offset === head.data.length) ch.queue.shift()
      ch.remoteWindow -= n
      ch.queued -= n
      this.sendData(encodeDataHeader(ch.remoteId, n, head.dataType), part)
    }
    if (ch.needDrain && ch.queued < this.limits.writeHighWaterMark) {
      ch.needDrain = false
      this.events.push({ _tag: "ChannelDrain", id: ch.id })
    }
    if (ch.queued > 0) return
    if (ch.eofRequested && !ch.eofSent) {
      ch.eofSent = true
      this.emit({ _tag: "ChannelEof", recipient: ch.remoteId })
    }
    if (ch.closeRequested) {
      ch.closeSent = true
      this.emit({ _tag: "ChannelClose", recipient: ch.remoteId })
    }
  }

  private emit(msg: ConnectionMessage): void {
    this.send(encodeConnectionMessage(msg))
  }

  /** The lowest free id: ids stay small and are reused after close, as in OpenSSH. */
  private allocate(type: string): Channel | undefined {
    if (this.channelCount >= this.limits.maxChannels) return undefined
    let id = 0
    while (this.channels[id] !== undefined) id++
    const ch: Channel = {
      id,
      type,
      state: "opening",
      remoteId: 0,
      remoteWindow: 0,
      remoteMaxPacket: 0,
      localWindow: this.limits.initialWindow,
      unconsumed: 0,
      unacknowledged: 0,
      queue: [],
      queued: 0,
      needDrain: false,
      eofRequested: false,
      eofSent: false,
      eofReceived: false,
      closeRequested: false,
      closeSent: false,
      sentRequests: [],
      repliesOwed: 0
    }
    this.channels[id] = ch
    this.channelCount++
    return ch
  }

  private free(id: number): void {
    if (this.channels[id] === undefined) return
    this.channels[id] = undefined
    this.channelCount--
  }

  /** The channel a peer message addresses: it must be open (confirmed, CLOSE not received). */
  private target(recipient: number, what: string): Channel {
    const ch = this.channels[recipient]
    if (ch === undefined || ch.state === "offered" || ch.state === "failed") {
      throw new ProtocolError("protocol", `${what} for unknown channel ${recipient}`)
    }
    if (ch.state === "opening") {
      throw new ProtocolError("protocol", `${what} for channel ${recipient} before its open was confirmed`)
    }
    if (ch.state === "closed") {
      throw new ProtocolError("protocol", `${what} for channel ${recipient} after CHANNEL_CLOSE`)
    }
    return ch
  }

  private opening(recipient: number, what: string): Channel {
    const ch = this.channels[recipient]
    if (ch === undefined || ch.state !== "opening") {
      throw new ProtocolError("protocol", `${what} for channel ${recipient}, which is not being opened`)
    }
    return ch
  }

  private known(id: number): Channel {
    const ch = this.channels[id]
    if (ch === undefined) throw new ConnectionUsageError("unknown-channel", `no channel ${id}`)
    return ch
  }

  private offered(id: number): Channel {
    const ch = this.known(id)
    if (ch.state !== "offered") {
      throw new ConnectionUsageError("channel-state", `channel ${id} is not awaiting an answer to its open request`)
    }
    return ch
  }
}
