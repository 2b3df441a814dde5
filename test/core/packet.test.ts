import { createCipheriv, createHmac, randomBytes } from "node:crypto"
import { inflateSync, deflateSync, constants as zlibConstants } from "node:zlib"
import { cbc, ctr, gcm } from "@noble/ciphers/aes.js"
import { chacha20orig } from "@noble/ciphers/chacha.js"
import { poly1305 } from "@noble/ciphers/_poly1305.js"
import { describe, expect, it } from "vitest"
import { CIPHERS, DEFAULT_CIPHERS } from "../../src/protocol/crypto/ciphers.js"
import { DEFAULT_MACS, MACS } from "../../src/protocol/crypto/macs.js"
import { PacketDecoder, PacketEncoder, type DirectionKeys } from "../../src/protocol/transport/packet.js"
import { poly1305 as wasmPoly1305 } from "../../src/protocol/crypto/poly1305.js"
import { ProtocolError } from "../../src/protocol/wire/errors.js"

const SIZES = [0, 1, 15, 16, 17, 1000, 32768]

function keysFor(cipher: string, mac: string): DirectionKeys {
  return {
    cipher,
    mac,
    encKey: randomBytes(CIPHERS[cipher].keyLength),
    iv: randomBytes(CIPHERS[cipher].ivLength),
    macKey: randomBytes(MACS[mac]?.keyLength ?? 0)
  }
}

function pair(keys: DirectionKeys, encoderOptions?: { randomBytes?: (n: number) => Uint8Array }) {
  const encoder = new PacketEncoder(encoderOptions)
  const decoder = new PacketDecoder()
  encoder.setKeys(keys)
  decoder.setKeys(keys)
  return { encoder, decoder }
}

function payloadOf(size: number, seed: number): Uint8Array {
  const p = new Uint8Array(size)
  for (let i = 0; i < size; i++) p[i] = (i * 31 + seed) & 0xff
  return p
}

function concat(parts: ReadonlyArray<Uint8Array>): Uint8Array {
  return Buffer.concat(parts)
}

/** Hex, so that a Buffer and a Uint8Array compare equal and large payloads compare fast. */
function hex(bytes: Uint8Array | undefined): string | undefined {
  return bytes === undefined ? undefined : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex")
}

function hexAll(list: ReadonlyArray<Uint8Array>): Array<string | undefined> {
  return list.map(hex)
}

function drain(decoder: PacketDecoder): Array<Uint8Array> {
  const out: Array<Uint8Array> = []
  for (let p = decoder.next(); p !== undefined; p = decoder.next()) out.push(p)
  return out
}

/** Deterministic "random" padding so an independent computation can predict the wire bytes. */
function countingRandom(): (n: number) => Uint8Array {
  let counter = 0
  return (n) => Uint8Array.from({ length: n }, () => counter++ & 0xff)
}

function protocolError(f: () => unknown): ProtocolError {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError)
    return e as ProtocolError
  }
  throw new Error("expected a ProtocolError")
}

function flipBit(bytes: Uint8Array, index: number): Uint8Array {
  const copy = Uint8Array.from(bytes)
  copy[index] ^= 0x10
  return copy
}

function header(packetLength: number, padding: number): Uint8Array {
  const h = Buffer.alloc(5)
  h.writeUInt32BE(packetLength, 0)
  h[4] = padding
  return h
}

const AEADS = Object.keys(CIPHERS).filter((c) => CIPHERS[c].aead)
const NON_AEAD = Object.keys(CIPHERS).filter((c) => !CIPHERS[c].aead)
const COMBOS: Array<[string, string]> = [
  ...AEADS.map((c): [string, string] => [c, "none"]),
  ...NON_AEAD.flatMap((c) => Object.keys(MACS).map((m): [string, string] => [c, m]))
]

describe("registries", () => {
  it("lists every required cipher and MAC with the derived-key sizes kex needs", () => {
    expect(Object.keys(CIPHERS).sort()).toEqual(
      [
        "chacha20-poly1305@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-cbc",
        "aes192-cbc",
        "aes256-cbc",
        "3des-cbc",
        "none"
      ].sort()
    )
    expect(CIPHERS["chacha20-poly1305@openssh.com"]).toEqual({ keyLength: 64, ivLength: 0, blockSize: 8, aead: true })
    expect(CIPHERS["aes256-gcm@openssh.com"]).toMatchObject({ keyLength: 32, ivLength: 12, blockSize: 16, aead: true })
    expect(CIPHERS["3des-cbc"]).toMatchObject({ keyLength: 24, ivLength: 8, blockSize: 8, aead: false })
    expect(MACS["hmac-sha1-96"]).toEqual({ keyLength: 20, length: 12, etm: false })
    expect(MACS["hmac-sha2-512-etm@openssh.com"]).toEqual({ keyLength: 64, length: 64, etm: true })
    for (const name of DEFAULT_CIPHERS) expect(CIPHERS[name]).toBeDefined()
    for (const name of DEFAULT_MACS) expect(MACS[name]).toBeDefined()
    expect(DEFAULT_CIPHERS[0]).toBe("aes128-gcm@openssh.com")
    expect(DEFAULT_CIPHERS).not.toContain("none")
  })
})

describe("poly1305", () => {
  it("matches the RFC 8439 §2.5.2 test vector", () => {
    const key = Buffer.from("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b", "hex")
    const tag = wasmPoly1305(new TextEncoder().encode("Cryptographic Forum Research Group"), key)
    expect(hex(tag)).toBe("a8061dc1305136c6c22b8baf0c0127a9")
  })

  it("agrees with @noble/ciphers for every length up to 300, extreme values and large messages", () => {
    const mismatches: Array<number> = []
    const check = (message: Uint8Array, key: Uint8Array) => {
      if (hex(wasmPoly1305(message, key)) !== hex(poly1305(message, key))) mismatches.push(message.length)
    }
    for (let length = 0; length <= 300; length++) {
      check(randomBytes(length), randomBytes(32))
      // all-ones message and r: the largest limbs and carries, and h near 2^130 - 5
      check(new Uint8Array(length).fill(0xff), Buffer.concat([Buffer.alloc(16, 0xff), randomBytes(16)]))
    }
    for (const length of [65536, 100000, 300000]) check(randomBytes(length), randomBytes(32))
    expect(mismatches).toEqual([])
  })
})

describe("round trip", () => {
  it.each(COMBOS)("%s with %s, fed whole and byte by byte", (cipher, mac) => {
    const keys = keysFor(cipher, mac)
    const { encoder, decoder } = pair(keys)
    const byteDecoder = new PacketDecoder()
    byteDecoder.setKeys(keys)
    const payloads = SIZES.map((size, i) => payloadOf(size, i))
    const wire = payloads.map((p) => encoder.encode(p))
    const blockSize = Math.max(CIPHERS[cipher].blockSize, 8)
    const tagLength = CIPHERS[cipher].aead ? 16 : MACS[mac].length
    const lengthOutside = CIPHERS[cipher].aead || MACS[mac].etm
    for (const [i, packet] of wire.entries()) {
      const body = packet.length - tagLength - (lengthOutside ? 4 : 0)
      expect(body % blockSize).toBe(0)
      const padding = packet.length - tagLength - 5 - payloads[i].length
      expect(padding).toBeGreaterThanOrEqual(4)
    }

    decoder.push(concat(wire))
    expect(hexAll(drain(decoder))).toEqual(hexAll(payloads))
    expect(decoder.buffered).toBe(0)

    const received: Array<Uint8Array> = []
    for (const byte of concat(wire)) {
      byteDecoder.push(Uint8Array.of(byte))
      const p = byteDecoder.next()
      if (p !== undefined) received.push(p)
    }
    expect(hexAll(received)).toEqual(hexAll(payloads))
    expect(encoder.sequence).toBe(SIZES.length)
    expect(byteDecoder.sequence).toBe(SIZES.length)
    expect(byteDecoder.packetsSinceKeys).toBe(SIZES.length)
    expect(byteDecoder.bytesSinceKeys).toBe(concat(wire).length)
    expect(encoder.bytesSinceKeys).toBe(concat(wire).length)
  })

  it("pads with the random bytes it is given, at least 4 and aligned to 8 before keys", () => {
    const encoder = new PacketEncoder({ randomBytes: (n) => new Uint8Array(n).fill(0xab) })
    const packet = encoder.encode(Uint8Array.of(21))
    // 4 + 1 + 1 = 6 → padding 10 for a 16-byte packet (6 would be < 8 alignment, 2 < 4).
    expect(Buffer.from(packet).toString("hex")).toBe("0000000c0a15" + "ab".repeat(10))
  })
})

describe("received chunks, lent or given", () => {
  it.each(["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr"])(
    "%s: a reused read buffer (lent, then detached and overwritten) and new chunks (given) decode alike",
    (cipher) => {
      const keys = keysFor(cipher, "hmac-sha2-256-etm@openssh.com")
      const { encoder } = pair(keys)
      const payloads = [...SIZES, 70000, 5].map((size, i) => payloadOf(size, i))
      const wire = concat(payloads.map((p) => encoder.encode(p)))
      for (const step of [1000, 7, 33000, 65536]) {
        const lent = new PacketDecoder()
        const given = new PacketDecoder()
        lent.setKeys(keys)
        given.setKeys(keys)
        const reused = Buffer.alloc(step)
        const fromLent: Array<Uint8Array> = []
        const fromGiven: Array<Uint8Array> = []
        for (let at = 0; at < wire.length; at += step) {
          const chunk = wire.subarray(at, at + step)
          reused.set(chunk)
          lent.push(reused.subarray(0, chunk.length))
          fromLent.push(...drain(lent))
          lent.detach()
          reused.fill(0xaa)
          given.push(Buffer.from(chunk), true)
          fromGiven.push(...drain(given))
        }
        expect(hexAll(fromLent)).toEqual(hexAll(payloads))
        expect(hexAll(fromGiven)).toEqual(hexAll(payloads))
      }
    }
  )
})

describe("receive buffers shared between decoders", () => {
  it("keep every decoder's pending bytes its own while many decoders take turns", () => {
    // decoders borrow receive buffers from one shared pool while a packet straddles reads and
    // give them back once nothing is pending: interleaved, none may see another's bytes
    const keys = keysFor("aes128-gcm@openssh.com", "hmac-sha2-256-etm@openssh.com")
    const { encoder } = pair(keys)
    const payloads = [...SIZES, 70000, 5, 40000, 1].map((size, i) => payloadOf(size, i))
    const wire = concat(payloads.map((p) => encoder.encode(p)))
    const runs = [7, 1000, 4096, 33000, 65536, 100_000].flatMap((step) =>
      [false, true].map((given) => {
        const decoder = new PacketDecoder()
        decoder.setKeys(keys)
        return { step, given, decoder, at: 0, reused: Buffer.alloc(step), out: [] as Array<Uint8Array> }
      })
    )
    for (let active = runs; active.length > 0; active = active.filter((r) => r.at < wire.length)) {
      for (const r of active) {
        const chunk = wire.subarray(r.at, r.at + r.step)
        r.at += r.step
        if (r.given) {
          r.decoder.push(Buffer.from(chunk), true)
        } else {
          r.reused.set(chunk)
          r.decoder.push(r.reused.subarray(0, chunk.length))
        }
        r.out.push(...drain(r.decoder))
        if (!r.given) {
          r.decoder.detach()
          r.reused.fill(0xaa)
        }
      }
    }
    for (const r of runs) expect(hexAll(r.out), `step ${r.step}, given ${r.given}`).toEqual(hexAll(payloads))
  })
})

describe("gathered encoding (header and data given apart)", () => {
  it.each(COMBOS)("%s with %s decodes to the joined payload", (cipher, mac) => {
    const keys = keysFor(cipher, mac)
    const { encoder, decoder } = pair(keys)
    for (const [i, size] of SIZES.entries()) {
      const head = payloadOf(9, i)
      const data = payloadOf(size, i + 100)
      decoder.push(concat(encoder.encodeGathered(head, data)))
      expect(hex(decoder.next())).toBe(hex(concat([head, data])))
    }
    expect(encoder.sequence).toBe(SIZES.length)
    expect(decoder.sequence).toBe(SIZES.length)
  })
})

describe("key changes and sequence numbers", () => {
  it("switches keys between two buffered packets and keeps counting", () => {
    const encoder = new PacketEncoder()
    const decoder = new PacketDecoder()
    const wire = [encoder.encode(Uint8Array.of(20)), encoder.encode(Uint8Array.of(21))]
    const first = keysFor("aes128-ctr", "hmac-sha2-256")
    encoder.setKeys(first)
    expect(encoder.packetsSinceKeys).toBe(0)
    wire.push(encoder.encode(payloadOf(100, 1)), encoder.encode(Uint8Array.of(21)))
    const second = keysFor("chacha20-poly1305@openssh.com", "none")
    encoder.setKeys(second)
    wire.push(encoder.encode(payloadOf(5000, 2)))
    expect(encoder.sequence).toBe(5)

    decoder.push(concat(wire)) // everything arrives before the receiver has seen NEWKEYS
    expect(hex(decoder.next())).toBe(hex(Uint8Array.of(20)))
    expect(hex(decoder.next())).toBe(hex(Uint8Array.of(21)))
    decoder.setKeys(first)
    expect(hex(decoder.next())).toBe(hex(payloadOf(100, 1)))
    expect(hex(decoder.next())).toBe(hex(Uint8Array.of(21)))
    expect(decoder.packetsSinceKeys).toBe(2)
    decoder.setKeys(second)
    expect(decoder.sequence).toBe(4)
    expect(hex(decoder.next())).toBe(hex(payloadOf(5000, 2)))
    expect(decoder.next()).toBeUndefined()
    expect(decoder.sequence).toBe(5)
    expect(decoder.packetsSinceKeys).toBe(1)
  })

  it("restarts at sequence 0 under strict kex, and the MAC follows", () => {
    const keys = keysFor("aes256-ctr", "hmac-sha2-512-etm@openssh.com")
    const { encoder, decoder } = pair(keys)
    decoder.push(concat([encoder.encode(Uint8Array.of(1)), encoder.encode(Uint8Array.of(2))]))
    expect(drain(decoder)).toHaveLength(2)
    encoder.resetSequence()
    const packet = encoder.encode(Uint8Array.of(3))
    decoder.push(packet)
    // Without the reset the receiver expects sequence 2 and the MAC does not verify.
    expect(protocolError(() => decoder.next()).kind).toBe("mac")
    const again = pair(keys)
    again.decoder.push(concat([again.encoder.encode(Uint8Array.of(1)), again.encoder.encode(Uint8Array.of(2))]))
    drain(again.decoder)
    again.encoder.resetSequence()
    again.decoder.resetSequence()
    again.decoder.push(again.encoder.encode(Uint8Array.of(3)))
    expect(hex(again.decoder.next())).toBe(hex(Uint8Array.of(3)))
    expect(again.decoder.sequence).toBe(1)
  })
})

describe("known answers against an independent computation", () => {
  const plainPacket = (payload: Uint8Array, padding: Uint8Array): Uint8Array =>
    concat([header(1 + payload.length + padding.length, padding.length), payload, padding])

  it("chacha20-poly1305@openssh.com: length with K_1, payload with K_2 from block 1, Poly1305 over both", () => {
    const key = randomBytes(64)
    const random = countingRandom()
    const shadow = countingRandom()
    const { encoder } = pair({ cipher: "chacha20-poly1305@openssh.com", mac: "none", encKey: key, iv: new Uint8Array(0), macKey: new Uint8Array(0) }, { randomBytes: random })
    const payloads = [payloadOf(3, 1), payloadOf(700, 2), payloadOf(64, 3)]
    for (const [seq, payload] of payloads.entries()) {
      const packet = encoder.encode(payload)
      // packet_length excludes nothing but itself; 1 + payload + padding ≡ 0 mod 8, padding ≥ 4.
      let pad = 8 - ((1 + payload.length) % 8)
      if (pad < 4) pad += 8
      const plain = plainPacket(payload, shadow(pad))
      const nonce = Buffer.alloc(8)
      nonce.writeUInt32BE(seq, 4)
      const k2 = key.subarray(0, 32)
      const k1 = key.subarray(32, 64)
      const encLength = chacha20orig(k1, nonce, plain.subarray(0, 4))
      const body = chacha20orig(k2, nonce, plain.subarray(4), undefined, 1)
      const polyKey = chacha20orig(k2, nonce, new Uint8Array(32))
      const tag = poly1305(concat([encLength, body]), polyKey)
      expect(Buffer.from(packet).toString("hex")).toBe(Buffer.from(concat([encLength, body, tag])).toString("hex"))
    }
  })

  it("aes128-gcm@openssh.com: length as AAD, invocation counter carried across bytes", () => {
    const key = randomBytes(16)
    const iv = Buffer.from("0102030400000000000000ff", "hex")
    const random = countingRandom()
    const shadow = countingRandom()
    const { encoder } = pair({ cipher: "aes128-gcm@openssh.com", mac: "hmac-sha1", encKey: key, iv, macKey: new Uint8Array(0) }, { randomBytes: random })
    const nonces = ["0102030400000000000000ff", "010203040000000000000100", "010203040000000000000101"]
    for (const [i, nonceHex] of nonces.entries()) {
      const payload = payloadOf(i * 50, i)
      const packet = encoder.encode(payload)
      let pad = 16 - ((1 + payload.length) % 16)
      if (pad < 4) pad += 16
      const plain = plainPacket(payload, shadow(pad))
      const sealed = gcm(key, Buffer.from(nonceHex, "hex"), plain.subarray(0, 4)).encrypt(plain.subarray(4))
      expect(Buffer.from(packet).toString("hex")).toBe(Buffer.from(concat([plain.subarray(0, 4), sealed])).toString("hex"))
    }
  })

  it("aes128-ctr + hmac-sha2-256-etm: counter runs across packets, MAC over seq || length || ciphertext", () => {
    const keys = keysFor("aes128-ctr", "hmac-sha2-256-etm@openssh.com")
    const random = countingRandom()
    const shadow = countingRandom()
    const { encoder } = pair(keys, { randomBytes: random })
    const stream = ctr(keys.encKey, keys.iv)
    const plains = [payloadOf(10, 1), payloadOf(100, 2)].map((payload) => {
      let pad = 16 - ((1 + payload.length) % 16)
      if (pad < 4) pad += 16
      return plainPacket(payload, shadow(pad))
    })
    const allCiphertext = stream.encrypt(concat(plains.map((p) => p.subarray(4))))
    let offset = 0
    for (const [seq, plain] of plains.entries()) {
      const packet = encoder.encode(plain.subarray(5, 5 + plain.length - 5 - plain[4]))
      const body = allCiphertext.subarray(offset, offset + plain.length - 4)
      offset += body.length
      const seqBytes = Buffer.alloc(4)
      seqBytes.writeUInt32BE(seq)
      const mac = createHmac("sha256", keys.macKey).update(seqBytes).update(plain.subarray(0, 4)).update(body).digest()
      expect(Buffer.from(packet).toString("hex")).toBe(Buffer.from(concat([plain.subarray(0, 4), body, mac])).toString("hex"))
    }
  })

  it("aes256-cbc + hmac-sha1-96: MAC over seq || plaintext, CBC chained across packets", () => {
    const keys = keysFor("aes256-cbc", "hmac-sha1-96")
    const random = countingRandom()
    const shadow = countingRandom()
    const { encoder } = pair(keys, { randomBytes: random })
    const plains = [payloadOf(30, 1), payloadOf(1, 2)].map((payload) => {
      let pad = 16 - ((5 + payload.length) % 16)
      if (pad < 4) pad += 16
      return plainPacket(payload, shadow(pad))
    })
    const allCiphertext = cbc(keys.encKey, keys.iv, { disablePadding: true }).encrypt(concat(plains))
    let offset = 0
    for (const [seq, plain] of plains.entries()) {
      const packet = encoder.encode(plain.subarray(5, plain.length - plain[4]))
      const seqBytes = Buffer.alloc(4)
      seqBytes.writeUInt32BE(seq)
      const mac = createHmac("sha1", keys.macKey).update(seqBytes).update(plain).digest().subarray(0, 12)
      const body = allCiphertext.subarray(offset, offset + plain.length)
      offset += plain.length
      expect(Buffer.from(packet).toString("hex")).toBe(Buffer.from(concat([body, mac])).toString("hex"))
    }
  })
})

describe("malformed input", () => {
  const tamperCases: Array<[string, string]> = [
    ["chacha20-poly1305@openssh.com", "none"],
    ["aes128-gcm@openssh.com", "none"],
    ["aes256-gcm@openssh.com", "none"],
    ["aes128-ctr", "hmac-sha2-256-etm@openssh.com"],
    ["aes192-ctr", "hmac-sha2-256"],
    ["aes128-cbc", "hmac-sha1"],
    ["3des-cbc", "hmac-md5-96-etm@openssh.com"]
  ]

  it.each(tamperCases)("%s/%s: a flipped bit in the ciphertext or the tag is a MAC error", (cipher, mac) => {
    const keys = keysFor(cipher, mac)
    const packet = pair(keys).encoder.encode(payloadOf(200, 9))
    // Past the first 16 bytes so the length (clear or encrypted) stays intact.
    for (const index of [20, packet.length - 1]) {
      const decoder = new PacketDecoder()
      decoder.setKeys(keys)
      decoder.push(flipBit(packet, index))
      const error = protocolError(() => decoder.next())
      expect(error.kind).toBe("mac")
      expect(error.reason).toBe(5)
    }
  })

  it("rejects an oversized packet_length from the first block, before the packet arrives", () => {
    const plain = new PacketDecoder({ maxPacketLength: 35000 })
    plain.push(concat([header(0x7ffffff8, 4), new Uint8Array(3)]))
    const error = protocolError(() => plain.next())
    expect(error.kind).toBe("packet-too-large")
    expect(plain.buffered).toBe(8)

    const keys = keysFor("chacha20-poly1305@openssh.com", "none")
    const { encoder } = pair(keys)
    const chacha = new PacketDecoder({ maxPacketLength: 35000 })
    chacha.setKeys(keys)
    chacha.push(encoder.encode(payloadOf(40000, 1)).subarray(0, 4))
    expect(protocolError(() => chacha.next()).kind).toBe("packet-too-large")

    const gcmKeys = keysFor("aes128-gcm@openssh.com", "none")
    const gcmDecoder = new PacketDecoder()
    gcmDecoder.setKeys(gcmKeys)
    gcmDecoder.push(Uint8Array.of(0xff, 0xff, 0xff, 0xf0))
    expect(protocolError(() => gcmDecoder.next()).kind).toBe("packet-too-large")
  })

  it("rejects a padding length that leaves no room, or is below 4, as a protocol error", () => {
    const tooLong = new PacketDecoder()
    tooLong.push(concat([header(12, 12), new Uint8Array(11)]))
    expect(protocolError(() => tooLong.next()).kind).toBe("protocol")

    const tooShort = new PacketDecoder()
    tooShort.push(concat([header(12, 3), new Uint8Array(11)]))
    expect(protocolError(() => tooShort.next()).kind).toBe("protocol")

    // An authenticated packet with a bad padding length: checked after the tag, still refused.
    const key = randomBytes(16)
    const iv = randomBytes(12)
    const plain = concat([header(16, 200), new Uint8Array(15)])
    const wire = concat([plain.subarray(0, 4), gcm(key, iv, plain.subarray(0, 4)).encrypt(plain.subarray(4))])
    const decoder = new PacketDecoder()
    decoder.setKeys({ cipher: "aes128-gcm@openssh.com", mac: "none", encKey: key, iv, macKey: new Uint8Array(0) })
    decoder.push(wire)
    const error = protocolError(() => decoder.next())
    expect(error.kind).toBe("protocol")
    expect(error.reason).toBe(2)
  })

  it("rejects a length that is not a multiple of the block size, or too small", () => {
    const keys = keysFor("aes128-cbc", "hmac-sha2-256")
    const firstBlock = createCipheriv("aes-128-cbc", keys.encKey, keys.iv).setAutoPadding(false).update(concat([header(13, 4), new Uint8Array(11)]))
    const decoder = new PacketDecoder()
    decoder.setKeys(keys)
    decoder.push(firstBlock)
    expect(protocolError(() => decoder.next()).kind).toBe("protocol")

    const etm = new PacketDecoder()
    etm.setKeys(keysFor("aes128-ctr", "hmac-sha2-256-etm@openssh.com"))
    etm.push(header(20, 4))
    expect(protocolError(() => etm.next()).kind).toBe("protocol")

    const tiny = new PacketDecoder()
    tiny.push(concat([header(4, 4), new Uint8Array(3)]))
    expect(protocolError(() => tiny.next()).kind).toBe("protocol")
  })

  it("waits on a truncated packet instead of failing", () => {
    for (const [cipher, mac] of [...tamperCases, ["none", "none"] as [string, string]]) {
      const keys = keysFor(cipher, mac)
      const { encoder, decoder } = pair(keys)
      const packet = encoder.encode(payloadOf(500, 3))
      decoder.push(packet.subarray(0, packet.length - 1))
      expect(decoder.next()).toBeUndefined()
      expect(decoder.next()).toBeUndefined()
      decoder.push(packet.subarray(packet.length - 1))
      expect(hex(decoder.next())).toBe(hex(payloadOf(500, 3)))
    }
  })

  it("turns random garbage into ProtocolErrors or waiting, never another exception", () => {
    for (const [cipher, mac] of [...tamperCases, ["none", "none"] as [string, string], ["aes128-ctr", "hmac-sha1-96"] as [string, string]]) {
      for (let round = 0; round < 50; round++) {
        const decoder = new PacketDecoder()
        decoder.setKeys(keysFor(cipher, mac))
        decoder.push(randomBytes(1 + (round * 37) % 300))
        try {
          while (decoder.next() !== undefined) {
            // the none cipher can accept garbage that happens to be well-formed
          }
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError)
        }
      }
    }
  })
})

describe("compression", () => {
  it("round-trips zlib packets on one running stream, also with encryption", () => {
    for (const keys of [undefined, keysFor("aes128-gcm@openssh.com", "none")]) {
      const encoder = new PacketEncoder()
      const decoder = new PacketDecoder()
      if (keys !== undefined) {
        encoder.setKeys(keys)
        decoder.setKeys(keys)
      }
      encoder.startCompression("zlib")
      decoder.startCompression("zlib")
      const text = new TextEncoder().encode("SSH_MSG_CHANNEL_DATA ".repeat(200))
      const payloads = [...SIZES.map((s, i) => payloadOf(s, i)), text, text, randomBytes(40000), new Uint8Array(0)]
      const wire = payloads.map((p) => encoder.encode(p))
      // The second copy of the text compresses to a back-reference into the first.
      expect(wire[SIZES.length + 1].length).toBeLessThan(100)
      decoder.push(concat(wire))
      expect(hexAll(drain(decoder))).toEqual(hexAll(payloads))
    }
  })

  it("starts with zlib@openssh.com after a packet already buffered, and a rekey keeps the stream", () => {
    const encoder = new PacketEncoder()
    const decoder = new PacketDecoder()
    const wire = [encoder.encode(Uint8Array.of(52))] // USERAUTH_SUCCESS
    encoder.startCompression("zlib@openssh.com")
    wire.push(encoder.encode(payloadOf(3000, 1)))
    const keys = keysFor("aes256-ctr", "hmac-sha1")
    encoder.setKeys(keys)
    encoder.startCompression("zlib@openssh.com")
    wire.push(encoder.encode(payloadOf(3000, 1)))
    decoder.push(concat(wire))
    expect(hex(decoder.next())).toBe(hex(Uint8Array.of(52)))
    decoder.startCompression("zlib@openssh.com")
    expect(hex(decoder.next())).toBe(hex(payloadOf(3000, 1)))
    decoder.setKeys(keys)
    decoder.startCompression("zlib@openssh.com")
    expect(hex(decoder.next())).toBe(hex(payloadOf(3000, 1)))
  })

  it("speaks the same zlib stream as node:zlib in both directions", () => {
    const encoder = new PacketEncoder()
    encoder.startCompression("zlib")
    const payloads = [payloadOf(1000, 1), payloadOf(1000, 1), payloadOf(10, 7)]
    const bodies = payloads.map((p) => {
      const packet = encoder.encode(p)
      return packet.subarray(5, packet.length - packet[4])
    })
    const inflated = inflateSync(concat(bodies), { finishFlush: zlibConstants.Z_SYNC_FLUSH })
    expect(hex(inflated)).toBe(hex(concat(payloads)))

    const fromNode = deflateSync(payloadOf(5000, 3), { finishFlush: zlibConstants.Z_SYNC_FLUSH })
    const plain = new PacketEncoder().encode(fromNode)
    const decoder = new PacketDecoder()
    decoder.startCompression("zlib")
    decoder.push(plain)
    expect(hex(decoder.next())).toBe(hex(payloadOf(5000, 3)))
  })

  it("bounds a zlib bomb and rejects corrupt data with COMPRESSION_ERROR", () => {
    const encoder = new PacketEncoder()
    encoder.startCompression("zlib")
    const bomb = encoder.encode(new Uint8Array(20 * 1024 * 1024))
    expect(bomb.length).toBeLessThan(40000)
    const decoder = new PacketDecoder()
    decoder.startCompression("zlib")
    decoder.push(bomb)
    const error = protocolError(() => decoder.next())
    expect(error.kind).toBe("compression")
    expect(error.reason).toBe(6)

    const corrupt = new PacketDecoder()
    corrupt.startCompression("zlib")
    corrupt.push(new PacketEncoder().encode(Uint8Array.from([0x78, 0x9c, 0xff, 0xff, 0xff, 0x00, 0x12])))
    expect(protocolError(() => corrupt.next()).kind).toBe("compression")

    // A finished stream (Z_FINISH) cannot carry further packets.
    const finished = new PacketDecoder()
    finished.startCompression("zlib")
    finished.push(new PacketEncoder().encode(deflateSync(payloadOf(10, 1))))
    expect(protocolError(() => finished.next()).kind).toBe("compression")
  })
})
