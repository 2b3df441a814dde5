import { WireError } from "../wire/errors.js"
import { Fxp, SFTP_VERSION, Status } from "./constants.js"
import { SftpFramer } from "./framer.js"
import type { Hello, RequestBody, Response } from "./packets.js"
import { decodeHello, decodeResponse, encodeInit, encodeRequest } from "./packets.js"

/** Why a client session can no longer answer: the transport went away, or the server broke the protocol. */
export class SftpSessionClosed extends Error {
  override readonly name = "SftpSessionClosed"
  constructor(
    readonly reason: "connection-lost" | "protocol",
    message: string
  ) {
    super(message)
  }
}

/** Each request's callback gets exactly one outcome. */
export type Outcome = Response | SftpSessionClosed

export interface ClientSessionOptions {
  /** Requests on the wire at once; more are queued here until answers free a slot (default 1024). */
  readonly maxInFlight?: number
  /** The largest response accepted (default 4 MiB): a bigger length is a protocol error, not an allocation. */
  readonly maxPacketLength?: number
}

/**
 * The client side of one SFTP session, sans-IO: `receive` bytes from the channel, send what
 * `pollTransmit` returns. Requests get ids here; answers are matched to their callbacks by id,
 * in whatever order the server sends them.
 */
export class SftpClientSession {
  private readonly framer: SftpFramer
  private readonly maxInFlight: number
  private readonly pending = new Map<number, (outcome: Outcome) => void>()
  private readonly queued: Array<{ readonly id: number; readonly packet: Uint8Array }> = []
  private outbox: Array<Uint8Array> = []
  private nextId = 0
  private versionWaiters: Array<(outcome: Hello | SftpSessionClosed) => void> = []
  /** The server's VERSION, once received. */
  version: Hello | undefined
  /** Set once the session is over; every later request fails with it. */
  closed: SftpSessionClosed | undefined

  constructor(options: ClientSessionOptions = {}) {
    this.maxInFlight = options.maxInFlight ?? 1024
    this.framer = new SftpFramer(options.maxPacketLength ?? 4 * 1024 * 1024)
    this.outbox.push(encodeInit({ version: SFTP_VERSION, extensions: [] }))
  }

  /** Calls back with the server's VERSION (at once if it came already). */
  onVersion(callback: (outcome: Hello | SftpSessionClosed) => void): void {
    if (this.version) callback(this.version)
    else if (this.closed) callback(this.closed)
    else this.versionWaiters.push(callback)
  }

  /** Requests answered or failed yet, sent or queued. */
  get outstanding(): number {
    return this.pending.size
  }

  /** Queues a request; `callback` gets its response, or the reason the session ended first. */
  request(body: RequestBody, callback: (outcome: Outcome) => void): void {
    if (this.closed) return callback(this.closed)
    let id = this.nextId
    while (this.pending.has(id)) id = (id + 1) >>> 0
    this.nextId = (id + 1) >>> 0
    const packet = encodeRequest({ ...body, id } as Parameters<typeof encodeRequest>[0])
    this.pending.set(id, callback)
    if (this.pending.size - this.queued.length > this.maxInFlight) this.queued.push({ id, packet })
    else this.outbox.push(packet)
  }

  /** Packets to write to the channel, in order; undefined when there are none. */
  pollTransmit(): Array<Uint8Array> | undefined {
    if (this.outbox.length === 0) return undefined
    const out = this.outbox
    this.outbox = []
    return out
  }

  /** Feeds bytes from the channel. A malformed stream ends the session (see `closed`). */
  receive(bytes: Uint8Array): void {
    if (this.closed) return
    this.framer.push(bytes)
    try {
      for (let body = this.framer.next(); body !== undefined; body = this.framer.next()) this.dispatch(body)
    } catch (e) {
      if (!(e instanceof WireError)) throw e
      this.close(new SftpSessionClosed("protocol", `malformed SFTP packet from the server: ${e.message}`))
    }
  }

  private dispatch(body: Uint8Array): void {
    if (!this.version) {
      const hello = decodeHello(body, Fxp.VERSION)
      if (hello.version < SFTP_VERSION) throw new WireError(`server speaks SFTP version ${hello.version}; version 3 is required`)
      this.version = hello
      for (const w of this.versionWaiters.splice(0)) w(hello)
      return
    }
    const response = decodeResponse(body)
    const callback = this.pending.get(response.id)
    if (!callback) throw new WireError(`response to unknown request id ${response.id}`)
    this.pending.delete(response.id)
    const next = this.queued.shift()
    if (next) this.outbox.push(next.packet)
    callback(response)
  }

  /** Ends the session: every pending request and waiter gets `reason`. */
  close(reason: SftpSessionClosed): void {
    if (this.closed) return
    this.closed = reason
    const callbacks = [...this.pending.values()]
    this.pending.clear()
    this.queued.length = 0
    for (const w of this.versionWaiters.splice(0)) w(reason)
    for (const c of callbacks) c(reason)
  }
}

/** What a read pipeline hands out next. */
export type ReadOutcome =
  | { readonly _tag: "data"; readonly data: Uint8Array }
  | { readonly _tag: "end" }
  | { readonly _tag: "error"; readonly error: Response | SftpSessionClosed; readonly offset: number }

interface ReadSlot {
  offset: number
  length: number
  result: Outcome | undefined
}

export interface ReadPipelineOptions {
  readonly start: number
  /** Exclusive end; absent means "until EOF". */
  readonly end?: number
  readonly chunkSize: number
  /** Reads in flight ahead of the consumer. */
  readonly concurrency: number
}

/**
 * Reads a file with up to `concurrency` READs in flight and hands the data out in file order.
 * New reads are issued only as the consumer pulls, so buffered data never exceeds
 * concurrency × chunkSize. A short DATA (which servers may send before EOF) is followed by a
 * read of the rest before anything later is handed out.
 */
export class ReadPipeline {
  private readonly slots: Array<ReadSlot> = []
  private nextOffset: number
  private finished = false
  private waiter: ((outcome: ReadOutcome) => void) | undefined

  constructor(
    private readonly session: SftpClientSession,
    private readonly handle: Uint8Array,
    private readonly options: ReadPipelineOptions
  ) {
    this.nextOffset = options.start
  }

  /** Calls back with the next piece of the file, in order. One pull at a time. */
  pull(callback: (outcome: ReadOutcome) => void): void {
    this.fill()
    this.waiter = callback
    this.deliver()
  }

  /** Stops issuing reads; answers to those in flight are dropped. */
  abort(): void {
    this.finished = true
    this.slots.length = 0
  }

  private fill(): void {
    const end = this.options.end
    while (!this.finished && this.slots.length < this.options.concurrency && (end === undefined || this.nextOffset < end)) {
      const length = end === undefined ? this.options.chunkSize : Math.min(this.options.chunkSize, end - this.nextOffset)
      this.issue(this.slots.length, this.nextOffset, length)
      this.nextOffset += length
    }
  }

  private issue(index: number, offset: number, length: number): void {
    const slot: ReadSlot = { offset, length, result: undefined }
    this.slots.splice(index, 0, slot)
    this.session.request({ type: "read", handle: this.handle, offset, length }, (outcome) => {
      slot.result = outcome
      if (this.slots[0] === slot) this.deliver()
    })
  }

  private deliver(): void {
    const callback = this.waiter
    if (!callback) return
    const head = this.slots[0]
    if (head === undefined) {
      if (this.finished || (this.options.end !== undefined && this.nextOffset >= this.options.end)) {
        this.waiter = undefined
        callback({ _tag: "end" })
      }
      return
    }
    const result = head.result
    if (result === undefined) return
    this.waiter = undefined
    this.slots.shift()
    if (result instanceof SftpSessionClosed) {
      this.abort()
      return callback({ _tag: "error", error: result, offset: head.offset })
    }
    if (result.type === "status" && result.code === Status.EOF) {
      this.abort()
      return callback({ _tag: "end" })
    }
    if (result.type !== "data") {
      this.abort()
      return callback({ _tag: "error", error: result, offset: head.offset })
    }
    const n = result.data.length
    if (n === 0) {
      // an empty DATA would make no progress: treat it as the end, as OpenSSH's client does
      this.abort()
      return callback({ _tag: "end" })
    }
    if (n > head.length) {
      this.abort()
      return callback({
        _tag: "error",
        error: { type: "status", id: result.id, code: Status.BAD_MESSAGE, message: `server returned ${n} bytes for a read of ${head.length}`, language: "" },
        offset: head.offset
      })
    }
    if (n < head.length) this.issue(0, head.offset + n, head.length - n)
    callback({ _tag: "data", data: result.data })
  }
}

export interface WritePipelineOptions {
  readonly concurrency: number
  /** Called as each write is acknowledged, with its length. */
  readonly onAck?: (bytes: number) => void
}

/**
 * Keeps up to `concurrency` WRITEs in flight. The first failure is kept and reported to the
 * next `whenReady`/`whenDrained`; writes after it are not sent.
 */
export class WritePipeline {
  private inFlight = 0
  private readyWaiter: (() => void) | undefined
  private drainWaiter: (() => void) | undefined
  /** The first failed write, if any. */
  failure: { readonly error: Response | SftpSessionClosed; readonly offset: number } | undefined

  constructor(
    private readonly session: SftpClientSession,
    private readonly handle: Uint8Array,
    private readonly options: WritePipelineOptions
  ) {}

  write(offset: number, data: Uint8Array): void {
    if (this.failure) return
    this.inFlight++
    this.session.request({ type: "write", handle: this.handle, offset, data }, (outcome) => {
      this.inFlight--
      const ok = !(outcome instanceof SftpSessionClosed) && outcome.type === "status" && outcome.code === Status.OK
      if (ok) this.options.onAck?.(data.length)
      else this.failure ??= { error: outcome, offset }
      this.wake()
    })
  }

  /** Whether another write may be issued now (also true once a write failed, so the caller sees the failure). */
  get ready(): boolean {
    return this.failure !== undefined || this.inFlight < this.options.concurrency
  }

  /** Calls back when another write may be issued (or a write failed). */
  whenReady(callback: () => void): void {
    if (this.ready) return callback()
    this.readyWaiter = callback
  }

  /** Calls back when every write has been answered. */
  whenDrained(callback: () => void): void {
    if (this.inFlight === 0) return callback()
    this.drainWaiter = callback
  }

  private wake(): void {
    const ready = this.readyWaiter
    if (ready && (this.failure || this.inFlight < this.options.concurrency)) {
      this.readyWaiter = undefined
      ready()
    }
    const drained = this.drainWaiter
    if (drained && this.inFlight === 0) {
      this.drainWaiter = undefined
      drained()
    }
  }
}
