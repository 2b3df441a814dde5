import { releaseView } from "../crypto/slab.js"
import { WireError } from "../wire/errors.js"
import { concatBytes } from "../wire/writer.js"
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

/** A DATA answer to `readParts`: the bytes as views of the received chunks, never copied. */
export interface DataParts {
  readonly type: "data-parts"
  readonly id: number
  readonly parts: ReadonlyArray<Uint8Array>
  readonly length: number
}

/** What a `readParts` callback gets: DATA as parts, any other response as it is. */
export type ReadReply = DataParts | Outcome

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
  /** Ids of pending READs whose DATA goes out as parts (their callbacks in `pending` take a ReadReply). */
  private readonly wantsParts = new Set<number>()
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
    const id = this.allocateId()
    this.enqueue(id, encodeRequest({ ...body, id } as Parameters<typeof encodeRequest>[0]), callback)
  }

  /** A READ whose DATA comes back as views of the received chunks instead of one copied array. */
  readParts(handle: Uint8Array, offset: number, length: number, callback: (reply: ReadReply) => void): void {
    if (this.closed) return callback(this.closed)
    const id = this.allocateId()
    this.wantsParts.add(id)
    this.enqueue(id, encodeRequest({ type: "read", id, handle, offset, length }), callback as (outcome: Outcome) => void)
  }

  /**
   * Sends a request already encoded with id 0 (see `allocateWrite`), so that its payload could be
   * read straight into the packet; the session writes the id into it.
   */
  requestEncoded(packet: Uint8Array, callback: (outcome: Outcome) => void): void {
    if (this.closed) return callback(this.closed)
    const id = this.allocateId()
    new DataView(packet.buffer, packet.byteOffset + 5, 4).setUint32(0, id)
    this.enqueue(id, packet, callback)
  }

  private allocateId(): number {
    let id = this.nextId
    while (this.pending.has(id)) id = (id + 1) >>> 0
    this.nextId = (id + 1) >>> 0
    return id
  }

  private enqueue(id: number, packet: Uint8Array, callback: (outcome: Outcome) => void): void {
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
      for (let parts = this.framer.nextParts(); parts !== undefined; parts = this.framer.nextParts()) this.dispatch(parts)
    } catch (e) {
      if (!(e instanceof WireError)) throw e
      this.close(new SftpSessionClosed("protocol", `malformed SFTP packet from the server: ${e.message}`))
    }
  }

  private dispatch(parts: ReadonlyArray<Uint8Array>): void {
    if (parts.length > 1 && this.version && this.dispatchDataParts(parts)) return
    let body = parts[0]!
    if (parts.length > 1) {
      body = concatBytes(...parts)
      for (const p of parts) releaseView(p)
    }
    if (!this.version) {
      const hello = decodeHello(body, Fxp.VERSION)
      if (hello.version < SFTP_VERSION) throw new WireError(`server speaks SFTP version ${hello.version}; version 3 is required`)
      this.version = hello
      for (const w of this.versionWaiters.splice(0)) w(hello)
      return
    }
    const response = decodeResponse(body)
    const callback = this.settle(response.id)
    if (response.type === "data" && this.wantsParts.delete(response.id)) {
      return (callback as (reply: ReadReply) => void)({ type: "data-parts", id: response.id, parts: [response.data], length: response.data.length })
    }
    this.wantsParts.delete(response.id)
    callback(response)
  }

  /**
   * A DATA spread over several chunks, for a `readParts` request, goes out as views of those
   * chunks; anything else (false) is gathered and decoded as usual.
   */
  private dispatchDataParts(parts: ReadonlyArray<Uint8Array>): boolean {
    const head = parts[0]!
    // the 9 header bytes (type, id, data length) nearly always sit in the first chunk
    if (head.length < 9 || head[0] !== Fxp.DATA) return false
    const view = new DataView(head.buffer, head.byteOffset, 9)
    const id = view.getUint32(1)
    if (!this.wantsParts.has(id)) return false
    let total = 0
    for (const p of parts) total += p.length
    const length = view.getUint32(5)
    if (length !== total - 9) throw new WireError(`DATA of ${total} bytes claims ${length} bytes of data`)
    const callback = this.settle(id)
    this.wantsParts.delete(id)
    let data: ReadonlyArray<Uint8Array>
    if (head.length === 9) {
      releaseView(head)
      data = parts.slice(1)
    } else {
      data = [head.subarray(9), ...parts.slice(1)]
    }
    ;(callback as (reply: ReadReply) => void)({ type: "data-parts", id, parts: data, length })
    return true
  }

  /** Takes the callback of an answered request and lets a queued request go out in its place. */
  private settle(id: number): (outcome: Outcome) => void {
    const callback = this.pending.get(id)
    if (!callback) throw new WireError(`response to unknown request id ${id}`)
    this.pending.delete(id)
    const next = this.queued.shift()
    if (next) this.outbox.push(next.packet)
    return callback
  }

  /** Ends the session: every pending request and waiter gets `reason`. */
  close(reason: SftpSessionClosed): void {
    if (this.closed) return
    this.closed = reason
    const callbacks = [...this.pending.values()]
    this.pending.clear()
    this.wantsParts.clear()
    this.queued.length = 0
    for (const w of this.versionWaiters.splice(0)) w(reason)
    for (const c of callbacks) c(reason)
  }
}

/** What a read pipeline hands out next. */
export type ReadOutcome =
  /** `length` bytes of the file from `offset`, as views of the received chunks. */
  | { readonly _tag: "data"; readonly offset: number; readonly parts: ReadonlyArray<Uint8Array>; readonly length: number }
  | { readonly _tag: "end" }
  | { readonly _tag: "error"; readonly error: Response | SftpSessionClosed; readonly offset: number }

interface ReadSlot {
  offset: number
  length: number
  result: ReadReply | undefined
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

  /**
   * Calls back with the next piece of the file, in order: every answered read at the head at
   * once, so a consumer slower than the network takes several per pull. One pull at a time.
   */
  pull(callback: (outcome: ReadOutcome) => void): void {
    this.fill()
    this.waiter = callback
    this.deliver()
  }

  /**
   * Hands back the parts of a data outcome once nothing will read them again (fastGet: when
   * they are on disk), so the memory they lie in can take the next packets. Optional: parts
   * never given back are left to the GC.
   */
  recycle(parts: ReadonlyArray<Uint8Array>): void {
    for (const p of parts) releaseView(p)
  }

  /** Stops issuing reads; answers to those in flight are dropped. */
  abort(): void {
    this.finished = true
    this.slots.length = 0
  }

  private fill(): void {
    const end = this.options.end
    // refill in batches of an eighth of the slots: the requests of a batch leave in one socket
    // write, where one request per pull cost a system call (and a wake-up of the server) each
    const free = this.options.concurrency - this.slots.length
    if (this.slots.length > 0 && free < Math.max(1, this.options.concurrency >> 3)) return
    while (!this.finished && this.slots.length < this.options.concurrency && (end === undefined || this.nextOffset < end)) {
      const length = end === undefined ? this.options.chunkSize : Math.min(this.options.chunkSize, end - this.nextOffset)
      this.issue(this.slots.length, this.nextOffset, length)
      this.nextOffset += length
    }
  }

  private issue(index: number, offset: number, length: number): void {
    const slot: ReadSlot = { offset, length, result: undefined }
    this.slots.splice(index, 0, slot)
    this.session.readParts(this.handle, offset, length, (reply) => {
      slot.result = reply
      if (this.slots[0] === slot) this.deliver()
    })
  }

  private deliver(): void {
    const callback = this.waiter
    if (!callback) return
    const first = this.slots[0]
    if (first === undefined) {
      if (this.finished || (this.options.end !== undefined && this.nextOffset >= this.options.end)) {
        this.waiter = undefined
        callback({ _tag: "end" })
      }
      return
    }
    if (first.result === undefined) return
    this.waiter = undefined
    const parts: Array<Uint8Array> = []
    let length = 0
    // gather the answered reads at the head; anything else ends the batch, and is handed out
    // on its own by this pull when nothing came before it, or by the next one
    for (let head = this.slots[0]; head?.result !== undefined; head = this.slots[0]) {
      const result = head.result
      if (result instanceof SftpSessionClosed || result.type !== "data-parts" || result.length === 0 || result.length > head.length) {
        if (length > 0) break
        this.slots.shift()
        return callback(this.failed(head, result))
      }
      this.slots.shift()
      for (const p of result.parts) parts.push(p)
      length += result.length
      if (result.length < head.length) {
        this.issue(0, head.offset + result.length, head.length - result.length)
        break
      }
    }
    callback({ _tag: "data", offset: first.offset, parts, length })
  }

  /** The outcome of a read that brought no data: the end of the file, or an error. Stops the pipeline. */
  private failed(head: ReadSlot, result: ReadReply): ReadOutcome {
    this.abort()
    if (result instanceof SftpSessionClosed) return { _tag: "error", error: result, offset: head.offset }
    // an empty DATA would make no progress: treat it as the end, as OpenSSH's client does
    if ((result.type === "status" && result.code === Status.EOF) || (result.type === "data-parts" && result.length === 0)) return { _tag: "end" }
    if (result.type === "data-parts") {
      const message = `server returned ${result.length} bytes for a read of ${head.length}`
      return { _tag: "error", error: { type: "status", id: result.id, code: Status.BAD_MESSAGE, message, language: "" }, offset: head.offset }
    }
    return { _tag: "error", error: result, offset: head.offset }
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
    this.session.request({ type: "write", handle: this.handle, offset, data }, (outcome) => this.answered(outcome, offset, data.length))
  }

  /**
   * Like `write`, for a packet made by `encodeWriteHeader` (with this pipeline's handle) carrying
   * `length` bytes at `offset`. `reuse` gets the packet back once the server accepted it: its
   * bytes are sent by then, so the buffer may carry the next WRITE.
   */
  writeEncoded(offset: number, length: number, packet: Uint8Array, reuse?: (packet: Uint8Array) => void): void {
    if (this.failure) return
    this.inFlight++
    this.session.requestEncoded(packet, (outcome) => {
      if (this.answered(outcome, offset, length)) reuse?.(packet)
    })
  }

  private answered(outcome: Outcome, offset: number, length: number): boolean {
    this.inFlight--
    const ok = !(outcome instanceof SftpSessionClosed) && outcome.type === "status" && outcome.code === Status.OK
    if (ok) this.options.onAck?.(length)
    else this.failure ??= { error: outcome, offset }
    this.wake()
    return ok
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
