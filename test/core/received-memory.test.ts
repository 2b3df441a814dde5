import { describe, expect, it } from "vitest"
import { receivedBuffer, releaseView, retainView } from "../../src/protocol/crypto/slab.js"
import { ReadPipeline, SftpClientSession } from "../../src/protocol/sftp/client.js"
import type { ReadOutcome } from "../../src/protocol/sftp/client.js"
import { Fxp } from "../../src/protocol/sftp/constants.js"
import { SftpFramer } from "../../src/protocol/sftp/framer.js"
import type { Response } from "../../src/protocol/sftp/packets.js"
import { encodeResponse, encodeVersion } from "../../src/protocol/sftp/packets.js"

/** The largest packet carved from a slab: four fill one. */
const QUARTER = 256 * 1024

/** Carves `count` quarter-slab packets that fill one slab of their own, and returns them. */
function fillSlab(): Array<Buffer> {
  // start on a fresh slab: carve until a packet begins one
  let first = receivedBuffer(QUARTER)
  while (first.byteOffset !== 0) {
    releaseView(first)
    first = receivedBuffer(QUARTER)
  }
  return [first, receivedBuffer(QUARTER), receivedBuffer(QUARTER), receivedBuffer(QUARTER)]
}

/** Whether a new packet is carved from `slab` again within a few slabs' worth of packets. */
function reused(slab: ArrayBufferLike): boolean {
  // what is carved here is left to the GC: released, it would crowd the free list
  for (let i = 0; i < 48; i++) if (receivedBuffer(QUARTER).buffer === slab) return true
  return false
}

describe("received memory", () => {
  it("comes back for new packets once every packet carved from a slab is released", () => {
    const packets = fillSlab()
    const slab = packets[0]!.buffer
    expect(packets.every((p) => p.buffer === slab)).toBe(true)
    for (const p of packets) releaseView(p)
    expect(reused(slab)).toBe(true)
  })

  it("is never reused while one view of it is held", () => {
    const packets = fillSlab()
    const slab = packets[0]!.buffer
    const kept = packets[2]!.subarray(100, 200)
    retainView(kept)
    kept.fill(7)
    for (const p of packets) releaseView(p)
    expect(reused(slab)).toBe(false)
    expect(kept.every((b) => b === 7)).toBe(true)
    releaseView(kept)
    expect(reused(slab)).toBe(true)
  })

  it("refuses a release beyond the references held, and ignores memory it did not carve", () => {
    const [a, b, c, d] = fillSlab()
    releaseView(a!)
    releaseView(b!)
    releaseView(c!)
    releaseView(d!)
    expect(() => releaseView(a!)).toThrow(/released more often/)
    expect(() => releaseView(Buffer.alloc(QUARTER))).not.toThrow()
    expect(() => releaseView(receivedBuffer(100))).not.toThrow()
  })
})

/** The SFTP packets of `responses`, laid out back to back across quarter-slab chunks of one slab. */
function carvedStream(responses: ReadonlyArray<Response>): Array<Buffer> {
  const chunks = fillSlab()
  const wire = Buffer.concat(responses.map(encodeResponse))
  expect(wire.length).toBeLessThanOrEqual(4 * QUARTER)
  const count = Math.ceil(wire.length / QUARTER)
  for (let i = 0; i < count; i++) wire.copy(chunks[i]!, 0, i * QUARTER, Math.min(wire.length, (i + 1) * QUARTER))
  for (const unused of chunks.slice(count)) releaseView(unused)
  // the last chunk ends where the stream does
  return [...chunks.slice(0, count - 1), chunks[count - 1]!.subarray(0, wire.length - (count - 1) * QUARTER)]
}

describe("the SFTP framer and fastGet's recycling", () => {
  it("holds each chunk until used up and hands every part out with a reference of its own", () => {
    // 16 packets of 64 KiB fill the slab exactly; each lies in one chunk or spans two
    const body = 65536 - 4
    const responses = Array.from({ length: 16 }, (_, i): Response => ({ type: "data", id: i, data: new Uint8Array(body - 9).fill(i) }))
    const chunks = carvedStream(responses)
    const slab = chunks[0]!.buffer
    const framer = new SftpFramer(1 << 20)
    const parts: Array<Uint8Array> = []
    for (const c of chunks) {
      framer.push(c)
      for (let p = framer.nextParts(); p !== undefined; p = framer.nextParts()) parts.push(...p)
    }
    expect(framer.pending).toBe(0)
    // all but one part released: the slab stays out of reuse
    for (const p of parts.slice(1)) releaseView(p)
    expect(reused(slab)).toBe(false)
    expect(parts[0]![0]).toBe(Fxp.DATA)
    releaseView(parts[0]!)
    expect(reused(slab)).toBe(true)
  })

  const content = (offset: number) => new Uint8Array(200_000).map((_, i) => (offset + i) % 251)
  const expected = Buffer.concat([0, 1, 2].map((n) => content(n * 200_000)))

  /** Reads 600 000 bytes through a pipeline whose replies (after `first`) arrive in carved chunks. */
  function download(client: SftpClientSession, first: ReadonlyArray<Response>, firstId: number) {
    const pipeline = new ReadPipeline(client, Uint8Array.of(1), { start: 0, end: 600_000, chunkSize: 200_000, concurrency: 3 })
    const outcomes: Array<ReadOutcome> = []
    pipeline.pull((o) => outcomes.push(o))
    const chunks = carvedStream([...first, ...[0, 1, 2].map((n): Response => ({ type: "data", id: firstId + n, data: content(n * 200_000) }))])
    for (const c of chunks) client.receive(c)
    while (outcomes.at(-1)?._tag === "data") pipeline.pull((o) => outcomes.push(o))
    expect(outcomes.at(-1)?._tag).toBe("end")
    const parts = outcomes.flatMap((o) => (o._tag === "data" ? o.parts : []))
    return { pipeline, parts, slab: chunks[0]!.buffer }
  }

  function newSession(): SftpClientSession {
    const client = new SftpClientSession()
    client.receive(encodeVersion({ version: 3, extensions: [] }))
    client.pollTransmit()
    return client
  }

  it("recycles the memory of DATA once fastGet hands it back", () => {
    const { pipeline, parts, slab } = download(newSession(), [], 0)
    expect(Buffer.concat(parts).equals(expected)).toBe(true)
    pipeline.recycle(parts)
    expect(reused(slab)).toBe(true)
  })

  it("never recycles the memory under a handle the session returned", () => {
    const client = newSession()
    let handle: Uint8Array | undefined
    client.request({ type: "open", path: "/f", flags: 1, attrs: {} }, (o) => {
      if (!(o instanceof Error) && o.type === "handle") handle = o.handle
    })
    const { pipeline, parts, slab } = download(client, [{ type: "handle", id: 0, handle: Uint8Array.of(9, 8, 7, 6) }], 1)
    expect(Array.from(handle ?? [])).toEqual([9, 8, 7, 6])
    expect(Buffer.concat(parts).equals(expected)).toBe(true)
    pipeline.recycle(parts)
    // the handle's packet was never released, so its slab is not written over
    expect(reused(slab)).toBe(false)
    expect(Array.from(handle ?? [])).toEqual([9, 8, 7, 6])
  })
})
