import { randomBytes } from "node:crypto"
import { describe, expect, it } from "vitest"
import {
  Connection,
  ConnectionUsageError,
  type ConnectionEvent,
  type ConnectionLimits
} from "../../src/protocol/connection/connection.js"
import {
  decodeChannelData,
  decodeChannelExtendedData,
  decodeConnectionMessage,
  encodeChannelData,
  encodeChannelExtendedData,
  encodeConnectionMessage,
  type ConnectionMessage
} from "../../src/protocol/connection/messages.js"
import * as Req from "../../src/protocol/connection/requests.js"
import { ProtocolError, WireError } from "../../src/protocol/wire/errors.js"
import { ChannelOpenFailure, Msg } from "../../src/protocol/wire/messages.js"
import { concatBytes } from "../../src/protocol/wire/writer.js"

type Side = {
  readonly conn: Connection
  /** Payloads sent and not yet delivered to the other side. */
  readonly outbox: Uint8Array[]
  /** Every payload this side ever sent, decoded. */
  readonly sent: ConnectionMessage[]
  readonly events: () => ConnectionEvent[]
}

function side(limits?: Partial<ConnectionLimits>): Side {
  const outbox: Uint8Array[] = []
  const sent: ConnectionMessage[] = []
  const conn = new Connection((p) => {
    outbox.push(p)
    sent.push(decodeConnectionMessage(p))
  }, limits)
  const events = () => {
    const out: ConnectionEvent[] = []
    for (let e = conn.poll(); e !== undefined; e = conn.poll()) out.push(e)
    return out
  }
  return { conn, outbox, sent, events }
}

/** Two connections back to back; `pump` delivers until both outboxes are empty. */
function pair(limitsA?: Partial<ConnectionLimits>, limitsB?: Partial<ConnectionLimits>) {
  const a = side(limitsA)
  const b = side(limitsB)
  const pump = () => {
    while (a.outbox.length > 0 || b.outbox.length > 0) {
      while (a.outbox.length > 0) b.conn.handle(a.outbox.shift()!)
      while (b.outbox.length > 0) a.conn.handle(b.outbox.shift()!)
    }
  }
  return { a, b, pump }
}

/** Opens a channel from a, accepted by b; returns both ids. */
function openPair(limitsA?: Partial<ConnectionLimits>, limitsB?: Partial<ConnectionLimits>) {
  const p = pair(limitsA, limitsB)
  const aId = p.a.conn.openChannel("session")
  p.pump()
  const [req] = p.b.events()
  if (req?._tag !== "ChannelOpenRequest") throw new Error("expected an open request")
  p.b.conn.acceptChannel(req.id)
  p.pump()
  expect(p.a.events()).toEqual([{ _tag: "ChannelOpened", id: aId }])
  return { ...p, aId, bId: req.id }
}

const tags = (events: ReadonlyArray<ConnectionEvent>) => events.map((e) => e._tag)
const sentTags = (s: Side) => s.sent.map((m) => m._tag)

function u32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]
}

function protocolError(f: () => void): ProtocolError {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError)
    return e as ProtocolError
  }
  throw new Error("expected a ProtocolError")
}

/** Delivers data events to the consumer and reports them consumed, as a well-behaved reader does. */
function readAll(s: Side, consume = true): { data: Uint8Array; events: ConnectionEvent[] } {
  const events = s.events()
  const parts: Uint8Array[] = []
  for (const e of events) {
    if (e._tag === "ChannelData" || e._tag === "ChannelExtendedData") {
      parts.push(Uint8Array.from(e.data))
      if (consume) s.conn.consumed(e.id, e.data.length)
    }
  }
  return { data: concatBytes(...parts), events }
}

describe("channel open", () => {
  it("opens a channel both sides agree on, with each side's window and packet size", () => {
    const { a, b, pump } = pair({ initialWindow: 5000, maxPacket: 1000 }, { initialWindow: 7000, maxPacket: 2000 })
    const id = a.conn.openChannel("direct-tcpip", Req.encodeDirectTcpip({ host: "db", port: 5432, originatorAddress: "127.0.0.1", originatorPort: 40000 }))
    pump()
    const [req] = b.events()
    expect(req).toMatchObject({ _tag: "ChannelOpenRequest", type: "direct-tcpip", remoteId: id, window: 5000, maxPacket: 1000 })
    if (req?._tag !== "ChannelOpenRequest") throw new Error("unreachable")
    expect(Req.decodeDirectTcpip(req.data)).toEqual({ host: "db", port: 5432, originatorAddress: "127.0.0.1", originatorPort: 40000 })
    b.conn.acceptChannel(req.id)
    pump()
    expect(a.events()).toEqual([{ _tag: "ChannelOpened", id }])
    expect(a.conn.channelInfo(id)).toMatchObject({ type: "direct-tcpip", remoteWindow: 7000, localWindow: 5000, queued: 0 })
    expect(b.conn.channelInfo(req.id)).toMatchObject({ remoteWindow: 5000, localWindow: 7000 })
  })

  it("reports a rejected open with its reason and frees the id once the event is polled", () => {
    const { a, b, pump } = pair()
    const id = a.conn.openChannel("session")
    pump()
    const [req] = b.events()
    if (req?._tag !== "ChannelOpenRequest") throw new Error("expected an open request")
    b.conn.rejectChannel(req.id, ChannelOpenFailure.ADMINISTRATIVELY_PROHIBITED, "not here")
    expect(b.conn.channelInfo(req.id)).toBeUndefined()
    pump()
    expect(a.conn.channelInfo(id)).toBeDefined()
    expect(a.events()).toEqual([{ _tag: "ChannelOpenFailed", id, reason: 1, description: "not here" }])
    expect(a.conn.channelInfo(id)).toBeUndefined()
    expect(a.conn.openChannel("session")).toBe(id)
  })

  it("queues data written before the confirmation and sends it once the channel is open", () => {
    const { a, b, pump } = pair()
    const id = a.conn.openChannel("session")
    expect(a.conn.write(id, new Uint8Array([1, 2, 3]))).toBe(true)
    expect(a.conn.channelInfo(id)?.queued).toBe(3)
    pump()
    const [req] = b.events()
    if (req?._tag !== "ChannelOpenRequest") throw new Error("expected an open request")
    b.conn.acceptChannel(req.id)
    pump()
    expect(a.conn.channelInfo(id)?.queued).toBe(0)
    expect(readAll(b).data).toEqual(new Uint8Array([1, 2, 3]))
  })

  it("refuses commands on a channel that has not been accepted yet", () => {
    const { a, b, pump } = pair()
    a.conn.openChannel("session")
    pump()
    const [req] = b.events()
    if (req?._tag !== "ChannelOpenRequest") throw new Error("expected an open request")
    expect(() => b.conn.write(req.id, new Uint8Array(1))).toThrow(ConnectionUsageError)
    expect(() => b.conn.sendRequest(req.id, "exec", true)).toThrow(ConnectionUsageError)
    expect(() => b.conn.close(req.id)).toThrow(ConnectionUsageError)
    expect(() => b.conn.acceptChannel(req.id + 1)).toThrow(ConnectionUsageError)
  })
})

describe("channel requests", () => {
  it("delivers requests in order and matches replies to want-reply requests in order", () => {
    const { a, b, pump, aId, bId } = openPair()
    const pty = { term: "xterm-256color", cols: 80, rows: 24, width: 640, height: 480, modes: { ECHO: 1, VINTR: 3, TTY_OP_OSPEED: 38400 } }
    a.conn.sendRequest(aId, "pty-req", true, Req.encodePtyRequest(pty))
    a.conn.sendRequest(aId, "env", false, Req.encodeEnvRequest({ name: "LANG", value: "C.UTF-8" }))
    a.conn.sendRequest(aId, "exec", true, Req.encodeExecRequest("uptime"))
    pump()
    const reqs = b.events()
    expect(reqs.map((e) => e._tag === "ChannelRequest" && [e.id, e.request, e.wantReply])).toEqual([
      [bId, "pty-req", true],
      [bId, "env", false],
      [bId, "exec", true]
    ])
    const data = reqs.map((e) => (e._tag === "ChannelRequest" ? e.data : new Uint8Array()))
    expect(Req.decodePtyRequest(data[0]!)).toEqual(pty)
    expect(Req.decodeEnvRequest(data[1]!)).toEqual({ name: "LANG", value: "C.UTF-8" })
    expect(Req.decodeExecRequest(data[2]!)).toBe("uptime")

    b.conn.replyRequest(bId, true)
    b.conn.replyRequest(bId, false)
    expect(() => b.conn.replyRequest(bId, true)).toThrow(ConnectionUsageError)
    pump()
    expect(a.events()).toEqual([
      { _tag: "ChannelRequestReply", id: aId, request: "pty-req", success: true },
      { _tag: "ChannelRequestReply", id: aId, request: "exec", success: false }
    ])
  })

  it("passes unknown request types up so the application can refuse them", () => {
    const { a, b, pump, aId, bId } = openPair()
    b.conn.sendRequest(bId, "keepalive@openssh.com", true)
    pump()
    expect(a.events()).toEqual([{ _tag: "ChannelRequest", id: aId, request: "keepalive@openssh.com", wantReply: true, data: new Uint8Array() }])
    a.conn.replyRequest(aId, false)
    pump()
    expect(b.events()).toEqual([{ _tag: "ChannelRequestReply", id: bId, request: "keepalive@openssh.com", success: false }])
  })

  it("limits our own unanswered requests per channel and the peer's", () => {
    const { a, b, pump, aId } = openPair({ maxPendingChannelRequests: 2 }, { maxPendingChannelRequests: 3 })
    a.conn.sendRequest(aId, "one", true)
    a.conn.sendRequest(aId, "two", true)
    const err = (() => {
      try {
        a.conn.sendRequest(aId, "three", true)
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(ConnectionUsageError)
    expect((err as ConnectionUsageError).kind).toBe("request-limit")
    a.conn.sendRequest(aId, "no-reply-needed", false)
    pump()
    b.events()

    // A peer that ignores the limit: four unanswered want-reply requests against b's three.
    const { b: b2, bId: b2Id } = openPair({}, { maxPendingChannelRequests: 3 })
    const raw = (name: string) => encodeConnectionMessage({ _tag: "ChannelRequest", recipient: b2Id, request: name, wantReply: true, data: new Uint8Array() })
    b2.conn.handle(raw("r1"))
    b2.conn.handle(raw("r2"))
    b2.conn.handle(raw("r3"))
    protocolError(() => b2.conn.handle(raw("r4")))
  })

  it("rejects a reply the peer sends without a request", () => {
    const { a, aId } = openPair()
    const e = protocolError(() => a.conn.handle(encodeConnectionMessage({ _tag: "ChannelSuccess", recipient: aId })))
    expect(e.message).toMatch(/without a request/)
  })
})

describe("data and windows", () => {
  it("moves data both ways in packets no larger than the peer allows, adjusting windows", () => {
    const { a, b, pump, aId, bId } = openPair({ initialWindow: 1000, maxPacket: 100 }, { initialWindow: 700, maxPacket: 64 })
    const toB = randomBytes(10_000)
    const toA = randomBytes(7_777)
    a.conn.write(aId, toB)
    b.conn.write(bId, toA)
    const gotB: Uint8Array[] = []
    const gotA: Uint8Array[] = []
    for (let i = 0; i < 1000 && (a.outbox.length > 0 || b.outbox.length > 0); i++) {
      pump()
      gotB.push(readAll(b).data)
      gotA.push(readAll(a).data)
    }
    expect(Buffer.from(concatBytes(...gotB)).equals(toB)).toBe(true)
    expect(Buffer.from(concatBytes(...gotA)).equals(toA)).toBe(true)

    const sizes = (s: Side) => s.sent.flatMap((m) => (m._tag === "ChannelData" ? [m.data.length] : []))
    expect(Math.max(...sizes(a))).toBe(64)
    expect(Math.max(...sizes(b))).toBe(100)
    // Adjusts come only after half the window has been consumed.
    const adjusts = (s: Side) => s.sent.flatMap((m) => (m._tag === "ChannelWindowAdjust" ? [m.bytes] : []))
    expect(adjusts(b).length).toBeGreaterThan(0)
    expect(Math.min(...adjusts(b))).toBeGreaterThanOrEqual(350)
    expect(Math.min(...adjusts(a))).toBeGreaterThanOrEqual(500)
    expect(a.conn.channelInfo(aId)?.queued).toBe(0)
  })

  it("stops a sender at exactly the window when the consumer never takes the data", () => {
    const { a, b, pump, aId, bId } = openPair({}, { initialWindow: 1000, maxPacket: 300 })
    a.conn.write(aId, randomBytes(5000))
    pump()
    const first = readAll(b, false)
    expect(first.data.length).toBe(1000)
    expect(a.conn.channelInfo(aId)).toMatchObject({ remoteWindow: 0, queued: 4000 })
    expect(b.conn.channelInfo(bId)?.localWindow).toBe(0)

    b.conn.consumed(bId, 499)
    pump()
    expect(b.sent.some((m) => m._tag === "ChannelWindowAdjust")).toBe(false)
    expect(readAll(b).data.length).toBe(0)
    b.conn.consumed(bId, 1)
    pump()
    expect(b.sent.filter((m) => m._tag === "ChannelWindowAdjust")).toEqual([{ _tag: "ChannelWindowAdjust", recipient: aId, bytes: 500 }])
    expect(readAll(b, false).data.length).toBe(500)
    expect(a.conn.channelInfo(aId)).toMatchObject({ remoteWindow: 0, queued: 3500 })
    // More than was delivered cannot be consumed: that would grow the window past its bound.
    expect(() => b.conn.consumed(bId, 1001)).toThrow(ConnectionUsageError)
  })

  it("returns false at the high water mark and emits ChannelDrain once the queue falls below it", () => {
    const { a, b, pump, aId } = openPair({ writeHighWaterMark: 1000 }, { initialWindow: 400, maxPacket: 100 })
    expect(a.conn.write(aId, new Uint8Array(600))).toBe(true) // 400 sent, 200 queued
    expect(a.conn.write(aId, new Uint8Array(900))).toBe(false) // 1100 queued
    expect(a.conn.channelInfo(aId)?.queued).toBe(1100)
    pump()
    readAll(b) // consumes 400 -> adjust 400 -> 400 more sent, 700 queued
    pump()
    expect(a.conn.channelInfo(aId)?.queued).toBe(700)
    expect(a.events()).toEqual([{ _tag: "ChannelDrain", id: aId }])
    expect(a.conn.write(aId, new Uint8Array(10))).toBe(true)
  })

  it("carries extended data with its type, counted against the same window", () => {
    const { a, b, pump, aId, bId } = openPair({}, { initialWindow: 100, maxPacket: 64 })
    a.conn.write(aId, new Uint8Array(30).fill(1))
    a.conn.write(aId, new Uint8Array(90).fill(2), Req.ExtendedDataType.STDERR)
    pump()
    const events = b.events()
    expect(events.map((e) => e._tag === "ChannelExtendedData" ? [e._tag, e.dataType, e.data.length] : e._tag === "ChannelData" ? [e._tag, e.data.length] : e._tag)).toEqual([
      ["ChannelData", 30],
      ["ChannelExtendedData", 1, 64],
      ["ChannelExtendedData", 1, 6]
    ])
    expect(a.conn.channelInfo(aId)).toMatchObject({ remoteWindow: 0, queued: 20 })
    expect(b.conn.channelInfo(bId)?.localWindow).toBe(0)
  })

  it("never sends more than 256 KiB per packet, whatever the peer advertises", () => {
    const a = side()
    const id = a.conn.openChannel("session")
    a.conn.handle(encodeConnectionMessage({ _tag: "ChannelOpenConfirmation", recipient: id, sender: 0, window: 0xffffffff, maxPacket: 0xffffffff, data: new Uint8Array() }))
    a.conn.write(id, new Uint8Array(600 * 1024))
    expect(a.sent.flatMap((m) => (m._tag === "ChannelData" ? [m.data.length] : []))).toEqual([256 * 1024, 256 * 1024, 88 * 1024])
  })

  it("delivers data as a view into the received payload, without copying", () => {
    const { b, bId } = openPair()
    const payload = encodeChannelData(bId, new Uint8Array([7, 8, 9]))
    b.conn.handle(payload)
    const [e] = b.events()
    if (e?._tag !== "ChannelData") throw new Error("expected data")
    expect(e.data.buffer).toBe(payload.buffer)
    expect(e.data.byteOffset).toBe(payload.byteOffset + 9)
  })
})

describe("eof and close", () => {
  it("sends EOF only after the queued data, and CLOSE after that", () => {
    const { a, b, pump, aId, bId } = openPair({}, { initialWindow: 100, maxPacket: 100 })
    a.conn.write(aId, new Uint8Array(250))
    a.conn.eof(aId)
    expect(() => a.conn.write(aId, new Uint8Array(1))).toThrow(ConnectionUsageError)
    pump()
    expect(a.conn.channelInfo(aId)?.eofSent).toBe(false)
    let received = 0
    const seen: string[] = []
    for (let i = 0; i < 10; i++) {
      const r = readAll(b)
      received += r.data.length
      seen.push(...tags(r.events).filter((t) => t !== "ChannelData"))
      pump()
    }
    expect(received).toBe(250)
    expect(seen).toEqual(["ChannelEof"])
    expect(a.conn.channelInfo(aId)?.eofSent).toBe(true)
    expect(b.conn.channelInfo(bId)?.eofReceived).toBe(true)

    a.conn.close(aId)
    pump()
    expect(b.events()).toEqual([{ _tag: "ChannelClose", id: bId }])
    expect(a.events()).toEqual([{ _tag: "ChannelClose", id: aId }])
    expect(sentTags(a).slice(-2)).toEqual(["ChannelEof", "ChannelClose"])
    expect(sentTags(b).at(-1)).toBe("ChannelClose")
  })

  it("a graceful close flushes queued data, then EOF, then CLOSE", () => {
    const { a, b, pump, aId, bId } = openPair({}, { initialWindow: 100, maxPacket: 100 })
    a.conn.write(aId, new Uint8Array(150))
    a.conn.close(aId)
    expect(a.conn.channelInfo(aId)?.closing).toBe(true)
    pump()
    expect(readAll(b).data.length).toBe(100)
    pump()
    const rest = readAll(b)
    expect(rest.data.length).toBe(50)
    expect(tags(rest.events)).toEqual(["ChannelData", "ChannelEof", "ChannelClose"])
    expect(sentTags(a).filter((t) => t !== "ChannelOpen")).toEqual(["ChannelData", "ChannelData", "ChannelEof", "ChannelClose"])
    expect(tags(a.events())).toEqual(["ChannelClose"])
    expect(b.conn.channelInfo(bId)).toBeUndefined()
  })

  it("a forced close drops the queue and sends CLOSE at once", () => {
    const { a, b, pump, aId } = openPair({}, { initialWindow: 10, maxPacket: 10 })
    a.conn.write(aId, new Uint8Array(1000))
    a.conn.close(aId, true)
    expect(a.conn.channelInfo(aId)?.queued).toBe(0)
    expect(sentTags(a).slice(-2)).toEqual(["ChannelData", "ChannelClose"])
    pump()
    expect(tags(b.events())).toEqual(["ChannelData", "ChannelClose"])
    expect(tags(a.events())).toEqual(["ChannelClose"])
  })

  it("a close before the open is confirmed goes out right after the confirmation", () => {
    const { a, b, pump } = pair()
    const id = a.conn.openChannel("session")
    a.conn.write(id, new Uint8Array(3))
    a.conn.close(id)
    expect(a.conn.channelInfo(id)?.closing).toBe(true)
    pump()
    const [req] = b.events()
    if (req?._tag !== "ChannelOpenRequest") throw new Error("expected an open request")
    b.conn.acceptChannel(req.id)
    pump()
    expect(sentTags(a)).toEqual(["ChannelOpen", "ChannelData", "ChannelEof", "ChannelClose"])
    expect(tags(b.events())).toEqual(["ChannelData", "ChannelEof", "ChannelClose"])
    expect(tags(a.events())).toEqual(["ChannelOpened", "ChannelClose"])
  })

  it("answers the peer's CLOSE with CLOSE, dropping our queue", () => {
    const { a, b, pump, aId, bId } = openPair({}, { initialWindow: 10, maxPacket: 10 })
    a.conn.write(aId, new Uint8Array(100))
    pump()
    b.events()
    b.conn.close(bId, true)
    pump()
    expect(tags(a.events())).toEqual(["ChannelClose"])
    expect(tags(b.events())).toEqual(["ChannelClose"])
    expect(sentTags(a).at(-1)).toBe("ChannelClose")
    expect(a.conn.channelInfo(aId)).toBeUndefined()
  })

  it("discards what the peer sent before our CLOSE reached it", () => {
    const { a, b, pump, aId, bId } = openPair()
    a.conn.close(aId, true) // CLOSE waits in a's outbox
    b.conn.write(bId, new Uint8Array(5))
    b.conn.sendRequest(bId, "exit-status", false, Req.encodeExitStatus(0))
    b.conn.eof(bId)
    while (b.outbox.length > 0) a.conn.handle(b.outbox.shift()!)
    expect(a.events()).toEqual([])
    pump()
    expect(a.events()).toEqual([{ _tag: "ChannelClose", id: aId }])
    expect(tags(b.events())).toEqual(["ChannelClose"])
  })

  it("keeps a closed id reserved until ChannelClose is polled, then reuses the lowest free id", () => {
    const { a, b, pump, aId } = openPair()
    const second = a.conn.openChannel("session")
    expect(second).toBe(aId + 1)
    pump()
    a.conn.close(aId)
    pump()
    b.events()
    expect(a.conn.openChannel("session")).toBe(aId + 2) // ChannelClose for aId not polled yet
    expect(tags(a.events())).toContain("ChannelClose")
    expect(a.conn.openChannel("session")).toBe(aId)
  })

  it("makes eof and close idempotent and refuses writes and requests after close", () => {
    const { a, pump, aId } = openPair()
    a.conn.close(aId)
    a.conn.close(aId)
    a.conn.eof(aId)
    expect(() => a.conn.write(aId, new Uint8Array(1))).toThrow(ConnectionUsageError)
    expect(() => a.conn.sendRequest(aId, "signal", false)).toThrow(ConnectionUsageError)
    expect(sentTags(a).filter((t) => t === "ChannelClose")).toHaveLength(1)
    pump()
    a.events()
    expect(() => a.conn.write(aId, new Uint8Array(1))).toThrow(ConnectionUsageError)
    a.conn.consumed(aId, 0) // a late consumer report for a gone channel is harmless
  })
})

describe("global requests", () => {
  it("delivers global requests and their replies in order, with the allocated forward port", () => {
    const { a, b, pump } = pair()
    a.conn.globalRequest("tcpip-forward", true, Req.encodeTcpipForward({ address: "localhost", port: 0 }))
    a.conn.globalRequest("no-more-sessions@openssh.com", false)
    a.conn.globalRequest("keepalive@openssh.com", true)
    pump()
    const reqs = b.events()
    expect(reqs.map((e) => e._tag === "GlobalRequest" && [e.name, e.wantReply])).toEqual([
      ["tcpip-forward", true],
      ["no-more-sessions@openssh.com", false],
      ["keepalive@openssh.com", true]
    ])
    const first = reqs[0]
    if (first?._tag !== "GlobalRequest") throw new Error("unreachable")
    expect(Req.decodeTcpipForward(first.data)).toEqual({ address: "localhost", port: 0 })

    b.conn.replyGlobalRequest(true, Req.encodeTcpipForwardReply(40123))
    b.conn.replyGlobalRequest(false)
    expect(() => b.conn.replyGlobalRequest(true)).toThrow(ConnectionUsageError)
    pump()
    const replies = a.events()
    expect(replies.map((e) => e._tag === "GlobalRequestReply" && [e.name, e.success])).toEqual([
      ["tcpip-forward", true],
      ["keepalive@openssh.com", false]
    ])
    const r0 = replies[0]
    if (r0?._tag !== "GlobalRequestReply") throw new Error("unreachable")
    expect(Req.decodeTcpipForwardReply(r0.data)).toBe(40123)
    expect(Req.decodeTcpipForwardReply(new Uint8Array())).toBeUndefined()
  })

  it("rejects a reply without a request", () => {
    const { a } = pair()
    protocolError(() => a.conn.handle(Uint8Array.of(Msg.REQUEST_SUCCESS)))
    protocolError(() => a.conn.handle(Uint8Array.of(Msg.REQUEST_FAILURE)))
  })
})

describe("limits", () => {
  it("refuses channels beyond maxChannels with RESOURCE_SHORTAGE, without failing the connection", () => {
    const { a, b, pump } = pair({}, { maxChannels: 2 })
    a.conn.openChannel("session")
    a.conn.openChannel("session")
    const third = a.conn.openChannel("session")
    pump()
    expect(tags(b.events())).toEqual(["ChannelOpenRequest", "ChannelOpenRequest"])
    expect(a.events()).toEqual([{ _tag: "ChannelOpenFailed", id: third, reason: ChannelOpenFailure.RESOURCE_SHORTAGE, description: "too many channels" }])
  })

  it("refuses to open more channels than our own limit", () => {
    const { a } = pair({ maxChannels: 1 })
    a.conn.openChannel("session")
    try {
      a.conn.openChannel("session")
      expect.unreachable()
    } catch (e) {
      expect(e).toBeInstanceOf(ConnectionUsageError)
      expect((e as ConnectionUsageError).kind).toBe("channel-limit")
    }
  })

  it("bounds unanswered global requests in both directions", () => {
    const { a, b, pump } = pair({ maxPendingGlobalRequests: 2 }, { maxPendingGlobalRequests: 2 })
    a.conn.globalRequest("one", true)
    a.conn.globalRequest("two", true)
    expect(() => a.conn.globalRequest("three", true)).toThrow(ConnectionUsageError)
    a.conn.globalRequest("fire-and-forget", false)
    pump()
    b.conn.replyGlobalRequest(false)
    pump()
    a.conn.globalRequest("three", true)

    const raw = encodeConnectionMessage({ _tag: "GlobalRequest", name: "x", wantReply: true, data: new Uint8Array() })
    const c = side({ maxPendingGlobalRequests: 2 })
    c.conn.handle(raw)
    c.conn.handle(raw)
    protocolError(() => c.conn.handle(raw))
  })

  it("validates the limits it is given", () => {
    expect(() => new Connection(() => {}, { maxPacket: 512 * 1024 })).toThrow(RangeError)
    expect(() => new Connection(() => {}, { initialWindow: 2 ** 32 })).toThrow(RangeError)
    expect(() => new Connection(() => {}, { maxChannels: 0 })).toThrow(RangeError)
    expect(() => new Connection(() => {}, { maxPacket: 256 * 1024 })).not.toThrow()
  })
})

describe("protocol violations", () => {
  const opened = () => openPair({ initialWindow: 100, maxPacket: 50 }, { initialWindow: 100, maxPacket: 50 })

  it("data beyond the window", () => {
    const { a, aId } = opened()
    a.conn.handle(encodeChannelData(aId, new Uint8Array(50)))
    a.conn.handle(encodeChannelData(aId, new Uint8Array(40)))
    const e = protocolError(() => a.conn.handle(encodeChannelData(aId, new Uint8Array(11))))
    expect(e.message).toMatch(/beyond the window/)
  })

  it("extended data beyond the window", () => {
    const { a, aId } = opened()
    a.conn.handle(encodeChannelData(aId, new Uint8Array(50)))
    a.conn.handle(encodeChannelExtendedData(aId, 1, new Uint8Array(50)))
    protocolError(() => a.conn.handle(encodeChannelExtendedData(aId, 1, new Uint8Array(1))))
  })

  it("a packet larger than our maximum", () => {
    const { a, aId } = opened()
    protocolError(() => a.conn.handle(encodeChannelData(aId, new Uint8Array(51))))
  })

  it("messages for an unknown channel or one not yet confirmed", () => {
    const { a, aId } = opened()
    protocolError(() => a.conn.handle(encodeChannelData(aId + 5, new Uint8Array(1))))
    protocolError(() => a.conn.handle(encodeConnectionMessage({ _tag: "ChannelEof", recipient: 0xffffffff })))
    protocolError(() => a.conn.handle(encodeConnectionMessage({ _tag: "ChannelOpenConfirmation", recipient: aId, sender: 0, window: 0, maxPacket: 0, data: new Uint8Array() })))
    const pending = a.conn.openChannel("session")
    protocolError(() => a.conn.handle(encodeChannelData(pending, new Uint8Array(1))))
    protocolError(() => a.conn.handle(encodeConnectionMessage({ _tag: "ChannelWindowAdjust", recipient: pending, bytes: 1 })))
  })

  it("messages to a channel the peer offered but we have not accepted", () => {
    const { a, b, pump } = pair()
    a.conn.openChannel("session")
    pump()
    const [req] = b.events()
    if (req?._tag !== "ChannelOpenRequest") throw new Error("expected an open request")
    protocolError(() => b.conn.handle(encodeChannelData(req.id, new Uint8Array(1))))
  })

  it("data after EOF and anything after CLOSE", () => {
    const { a, aId } = opened()
    a.conn.handle(encodeConnectionMessage({ _tag: "ChannelEof", recipient: aId }))
    const e = protocolError(() => a.conn.handle(encodeChannelData(aId, new Uint8Array(1))))
    expect(e.message).toMatch(/after EOF/)
    a.conn.handle(encodeConnectionMessage({ _tag: "ChannelClose", recipient: aId }))
    protocolError(() => a.conn.handle(encodeConnectionMessage({ _tag: "ChannelRequest", recipient: aId, request: "x", wantReply: false, data: new Uint8Array() })))
    protocolError(() => a.conn.handle(encodeConnectionMessage({ _tag: "ChannelClose", recipient: aId })))
    a.events()
    protocolError(() => a.conn.handle(encodeConnectionMessage({ _tag: "ChannelClose", recipient: aId })))
  })

  it("a WINDOW_ADJUST that takes the window past 2^32-1", () => {
    const { a, aId } = opened()
    a.conn.handle(encodeConnectionMessage({ _tag: "ChannelWindowAdjust", recipient: aId, bytes: 0xffffffff - 100 }))
    expect(a.conn.channelInfo(aId)?.remoteWindow).toBe(0xffffffff)
    const e = protocolError(() => a.conn.handle(encodeConnectionMessage({ _tag: "ChannelWindowAdjust", recipient: aId, bytes: 1 })))
    expect(e.message).toMatch(/2\^32-1/)
  })

  it("truncated, oversized and unknown messages", () => {
    const { a, aId } = opened()
    const cases: Array<[string, number[]]> = [
      ["empty", []],
      ["unassigned number 83", [83]],
      ["transport message", [Msg.SERVICE_REQUEST]],
      ["data header cut", [Msg.CHANNEL_DATA, ...u32(aId), 0, 0]],
      ["data length beyond payload", [Msg.CHANNEL_DATA, ...u32(aId), ...u32(5), 1, 2]],
      ["data length short of payload", [Msg.CHANNEL_DATA, ...u32(aId), ...u32(1), 1, 2]],
      ["extended header cut", [Msg.CHANNEL_EXTENDED_DATA, ...u32(aId), ...u32(1), 0]],
      ["extended length huge", [Msg.CHANNEL_EXTENDED_DATA, ...u32(aId), ...u32(1), ...u32(0xffffffff), 1]],
      ["window adjust cut", [Msg.CHANNEL_WINDOW_ADJUST, ...u32(aId), 0, 0, 1]],
      ["eof with trailing bytes", [Msg.CHANNEL_EOF, ...u32(aId), 0]],
      ["open with huge type length", [Msg.CHANNEL_OPEN, ...u32(0x7fffffff), 0x61]],
      ["open missing max packet", [Msg.CHANNEL_OPEN, ...u32(1), 0x61, ...u32(0), ...u32(100)]],
      ["request missing want-reply", [Msg.CHANNEL_REQUEST, ...u32(aId), ...u32(4), 0x65, 0x78, 0x65, 0x63]],
      ["global request cut", [Msg.GLOBAL_REQUEST, ...u32(3), 0x61]],
      ["open failure with bad UTF-8", [Msg.CHANNEL_OPEN_FAILURE, ...u32(aId), ...u32(1), ...u32(1), 0xff, ...u32(0)]]
    ]
    for (const [name, bytes] of cases) {
      const e = protocolError(() => a.conn.handle(Uint8Array.from(bytes)))
      expect(e.kind, name).toBe("protocol")
    }
  })

  it("random garbage never escapes as anything but a ProtocolError", () => {
    for (let i = 0; i < 1500; i++) {
      const { a } = opened()
      const body = randomBytes(i % 40)
      const payload = concatBytes(Uint8Array.of(80 + (i % 21)), body)
      // Point some recipients at the open channel so deeper checks run too.
      if (payload.length >= 5 && i % 2 === 0) payload.set([0, 0, 0, 0], 1)
      try {
        a.conn.handle(payload)
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError)
      }
    }
  })
})

describe("fast path", () => {
  it("decodes CHANNEL_DATA and CHANNEL_EXTENDED_DATA exactly as the generic decoder does", () => {
    const results = (f: () => unknown) => {
      try {
        return { ok: f() }
      } catch (e) {
        expect(e).toBeInstanceOf(WireError)
        return { error: true }
      }
    }
    for (let i = 0; i < 2000; i++) {
      const valid = i % 2 === 0
      const data = randomBytes(i % 70)
      let payload: Uint8Array =
        i % 4 < 2
          ? encodeChannelData((i * 2654435761) >>> 0, data)
          : encodeChannelExtendedData(i, (i * 7) >>> 0, data)
      if (!valid) {
        // Corrupt: truncate, extend, or rewrite the length field.
        const k = i % 3
        if (k === 0) payload = payload.subarray(0, Math.max(0, payload.length - 1 - (i % 5)))
        else if (k === 1) payload = concatBytes(payload, Uint8Array.of(0))
        else payload[payload[0] === Msg.CHANNEL_DATA ? 8 : 12] ^= 1 + (i % 3)
      }
      const fast = results(() => (payload[0] === Msg.CHANNEL_DATA ? decodeChannelData(payload) : decodeChannelExtendedData(payload)))
      const generic = results(() => decodeConnectionMessage(payload))
      expect(fast).toEqual(generic)
      if (valid) expect("ok" in fast).toBe(true)
    }
  })

  it("encodes data messages the way the generic writer would lay them out", () => {
    const data = randomBytes(33)
    expect(encodeChannelData(7, data)).toEqual(Uint8Array.from([Msg.CHANNEL_DATA, ...u32(7), ...u32(33), ...data]))
    expect(encodeChannelExtendedData(7, 1, data)).toEqual(Uint8Array.from([Msg.CHANNEL_EXTENDED_DATA, ...u32(7), ...u32(1), ...u32(33), ...data]))
  })

  it("round-trips every connection message through the generic codec", () => {
    const e = new Uint8Array()
    const msgs: ConnectionMessage[] = [
      { _tag: "GlobalRequest", name: "tcpip-forward", wantReply: true, data: Uint8Array.of(1, 2) },
      { _tag: "RequestSuccess", data: Uint8Array.of(0, 0, 1, 0) },
      { _tag: "RequestFailure" },
      { _tag: "ChannelOpen", channelType: "session", sender: 3, window: 2 ** 21, maxPacket: 32768, data: e },
      { _tag: "ChannelOpenConfirmation", recipient: 3, sender: 9, window: 1, maxPacket: 2, data: e },
      { _tag: "ChannelOpenFailure", recipient: 3, reason: 2, description: "connect failed ✗", language: "en" },
      { _tag: "ChannelWindowAdjust", recipient: 1, bytes: 0xffffffff },
      { _tag: "ChannelData", recipient: 1, data: Uint8Array.of(9) },
      { _tag: "ChannelExtendedData", recipient: 1, dataType: 1, data: Uint8Array.of(9) },
      { _tag: "ChannelEof", recipient: 4 },
      { _tag: "ChannelClose", recipient: 4 },
      { _tag: "ChannelRequest", recipient: 4, request: "exec", wantReply: true, data: Uint8Array.of(0, 0, 0, 0) },
      { _tag: "ChannelSuccess", recipient: 4 },
      { _tag: "ChannelFailure", recipient: 4 }
    ]
    for (const m of msgs) expect(decodeConnectionMessage(encodeConnectionMessage(m))).toEqual(m)
  })
})

describe("terminal modes", () => {
  it("has every mode of RFC 4254 §8 and IUTF8", () => {
    expect(Object.keys(Req.TerminalMode)).toHaveLength(56)
    expect(Req.TerminalMode).toMatchObject({ VINTR: 1, VDISCARD: 18, IGNPAR: 30, IUTF8: 42, ISIG: 50, PENDIN: 62, OPOST: 70, ONLRET: 75, CS7: 90, PARODD: 93, TTY_OP_ISPEED: 128, TTY_OP_OSPEED: 129 })
  })

  it("encodes opcode/uint32 pairs ended by TTY_OP_END, and decodes them back", () => {
    expect(Req.encodeTerminalModes({ ECHO: 1, TTY_OP_ISPEED: 38400 })).toEqual(Uint8Array.from([53, ...u32(1), 128, ...u32(38400), 0]))
    const all = Object.fromEntries(Object.keys(Req.TerminalMode).map((k, i) => [k, i * 1000 + 1])) as Req.TerminalModes
    expect(Req.decodeTerminalModes(Req.encodeTerminalModes(all))).toEqual(all)
    expect(Req.decodeTerminalModes(Req.encodeTerminalModes({}))).toEqual({})
  })

  it("skips unknown opcodes, stops at 160 and above, and rejects a cut argument", () => {
    expect(Req.decodeTerminalModes(Uint8Array.from([20, ...u32(5), 53, ...u32(1), 160, 1, 2, 3]))).toEqual({ ECHO: 1 })
    expect(Req.decodeTerminalModes(Uint8Array.from([53, ...u32(0)]))).toEqual({ ECHO: 0 }) // no TTY_OP_END
    expect(() => Req.decodeTerminalModes(Uint8Array.from([53, 0, 0]))).toThrow(WireError)
    expect(() => Req.encodeTerminalModes({ ECHO: -1 })).toThrow(RangeError)
    expect(() => Req.encodeTerminalModes({ NOPE: 1 } as Req.TerminalModes)).toThrow(RangeError)
  })
})

describe("request payloads", () => {
  const roundTrips: Array<[string, () => unknown, (d: Uint8Array) => unknown, Uint8Array]> = []
  const add = <T>(name: string, value: T, enc: (v: T) => Uint8Array, dec: (d: Uint8Array) => T) =>
    roundTrips.push([name, () => value, dec, enc(value)])
  add("pty-req", { term: "vt100", cols: 132, rows: 43, width: 0, height: 0, modes: { IUTF8: 1, VERASE: 127 } }, Req.encodePtyRequest, Req.decodePtyRequest)
  add("x11-req", { singleConnection: true, protocol: "MIT-MAGIC-COOKIE-1", cookie: "0123abcd", screen: 0 }, Req.encodeX11Request, Req.decodeX11Request)
  add("env", { name: "LC_ALL", value: "fr_FR.UTF-8 é" }, Req.encodeEnvRequest, Req.decodeEnvRequest)
  add("exec", "ls -l /tmp", Req.encodeExecRequest, Req.decodeExecRequest)
  add("subsystem", "sftp", Req.encodeSubsystemRequest, Req.decodeSubsystemRequest)
  add("window-change", { cols: 100, rows: 30, width: 800, height: 600 }, Req.encodeWindowChange, Req.decodeWindowChange)
  add("xon-xoff", true, Req.encodeXonXoff, Req.decodeXonXoff)
  add("signal", "INT", Req.encodeSignalRequest, Req.decodeSignalRequest)
  add("exit-status", 255, Req.encodeExitStatus, Req.decodeExitStatus)
  add("exit-signal", { signal: "SEGV", coreDumped: true, message: "boom", language: "" }, Req.encodeExitSignal, Req.decodeExitSignal)
  add("tcpip-forward", { address: "0.0.0.0", port: 8080 }, Req.encodeTcpipForward, Req.decodeTcpipForward)
  add("streamlocal-forward", "/tmp/sock", Req.encodeStreamlocalForward, Req.decodeStreamlocalForward)
  add("direct-tcpip", { host: "example.com", port: 443, originatorAddress: "::1", originatorPort: 5000 }, Req.encodeDirectTcpip, Req.decodeDirectTcpip)
  add("forwarded-tcpip", { address: "127.0.0.1", port: 2222, originatorAddress: "10.0.0.9", originatorPort: 61000 }, Req.encodeForwardedTcpip, Req.decodeForwardedTcpip)
  add("x11 open", { originatorAddress: "127.0.0.1", originatorPort: 6010 }, Req.encodeX11Open, Req.decodeX11Open)
  add("direct-streamlocal", "/run/app.sock", Req.encodeDirectStreamlocal, Req.decodeDirectStreamlocal)
  add("forwarded-streamlocal", "/run/app.sock", Req.encodeForwardedStreamlocal, Req.decodeForwardedStreamlocal)

  it.each(roundTrips)("%s round-trips and rejects truncation and trailing bytes", (_name, value, dec, encoded) => {
    expect(dec(encoded)).toEqual(value())
    for (let n = 0; n < encoded.length; n++) {
      // The streamlocal opens accept a missing reserved tail; everything else must fail when cut.
      let result: unknown
      try {
        result = dec(encoded.subarray(0, n))
      } catch (e) {
        expect(e).toBeInstanceOf(WireError)
        continue
      }
      expect(result).toEqual(value())
    }
    expect(() => dec(concatBytes(encoded, Uint8Array.of(0)))).toThrow(WireError)
  })

  it("lays out exit-signal as RFC 4254 §6.10 says", () => {
    const bytes = Req.encodeExitSignal({ signal: "KILL", coreDumped: false, message: "", language: "en" })
    expect(bytes).toEqual(Uint8Array.from([...u32(4), ...Buffer.from("KILL"), 0, ...u32(0), ...u32(2), ...Buffer.from("en")]))
  })

  it("rejects a malformed UTF-8 command", () => {
    expect(() => Req.decodeExecRequest(Uint8Array.from([...u32(1), 0xc3]))).toThrow(WireError)
  })
})
