/**
 * The native ciphers (native/effect_ssh_crypto.c) against the node:crypto path they replace:
 * the same bytes both ways, tampering caught, bad arguments refused with an exception.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "vitest"
import { AesGcmKeys } from "../../src/protocol/crypto/aes-gcm.js"
import { ChaChaPolyKeys } from "../../src/protocol/crypto/chacha20-poly1305.js"
import { NATIVE_FROM, nativeCiphers } from "../../src/protocol/crypto/native.js"

const SIZES = [0, 1, 12, 15, 16, 17, 255, 1000, 4095, 4096, 32768, 65536 + 3]
const TAG = 16

/** A packet: 4-byte length, `body` bytes of random content, room for the tag. */
function packetOf(bodyLength: number): Buffer {
  const packet = Buffer.alloc(4 + bodyLength + TAG)
  packet.writeUInt32BE(bodyLength, 0)
  randomBytes(bodyLength).copy(packet, 4)
  return packet
}

const native = nativeCiphers
// Under CI the addon must have been built by `npm ci`; elsewhere a missing compiler only skips these.
const available = native !== undefined

describe("native ciphers", () => {
  it("are built and loaded (required under CI=true)", () => {
    if (process.env.CI === "true") expect(native).toBeDefined()
    else if (!available) console.warn("native ciphers not built: node:crypto serves (run `npm install` with a C compiler)")
  })

  describe.skipIf(!available)("against node:crypto", () => {
    for (const [algorithm, keyLength] of [["aes-128-gcm", 16], ["aes-256-gcm", 32]] as const) {
      it(`${algorithm}: the same sealed bytes, opened by either, the invocation counter carried across bytes and paths`, () => {
        const key = randomBytes(keyLength)
        const iv = Buffer.from("01020304000000fffffffffe", "hex")
        const sealers = [new AesGcmKeys(algorithm, key, iv, "encrypt", native), new AesGcmKeys(algorithm, key, iv, "encrypt", undefined)]
        const openers = [new AesGcmKeys(algorithm, key, iv, "decrypt", undefined), new AesGcmKeys(algorithm, key, iv, "decrypt", native)]
        for (const size of SIZES) {
          const plain = packetOf(size)
          const [a, b] = [Buffer.from(plain), Buffer.from(plain)]
          sealers[0].seal(a, 4 + size)
          sealers[1].seal(b, 4 + size)
          expect(a.toString("hex")).toBe(b.toString("hex"))
          expect(openers[0].open(a, 4 + size)?.toString("hex")).toBe(plain.subarray(4, 4 + size).toString("hex"))
          expect(openers[1].open(b, 4 + size)?.toString("hex")).toBe(plain.subarray(4, 4 + size).toString("hex"))
        }
      })

      it(`${algorithm}: sealAround leaves the data as it was and matches a packet sealed whole`, () => {
        const key = randomBytes(keyLength)
        const iv = randomBytes(12)
        const around = new AesGcmKeys(algorithm, key, iv, "encrypt", native)
        const whole = new AesGcmKeys(algorithm, key, iv, "encrypt", undefined)
        for (const size of SIZES) {
          const packet = packetOf(9 + size + 7)
          const prefix = Buffer.from(packet.subarray(0, 13))
          const data = Buffer.from(packet.subarray(13, 13 + size))
          const plainData = Buffer.from(data)
          const suffix = Buffer.from(packet.subarray(13 + size))
          const sealed = around.sealAround(prefix, data, suffix)
          whole.seal(packet, packet.length - TAG)
          expect(data.equals(plainData)).toBe(true)
          expect(Buffer.concat([prefix, sealed, suffix]).toString("hex")).toBe(packet.toString("hex"))
        }
      })
    }

    it("chacha20-poly1305: the same sealed bytes and length field, opened by either", () => {
      const key = randomBytes(64)
      const nativeKeys = new ChaChaPolyKeys(key, native)
      const nodeKeys = new ChaChaPolyKeys(key, undefined)
      for (const [i, size] of SIZES.entries()) {
        const sequence = i === 0 ? 0xffffffff : i * 1000
        const plain = packetOf(size)
        const [a, b] = [Buffer.from(plain), Buffer.from(plain)]
        nativeKeys.cryptLength(sequence, a)
        nodeKeys.cryptLength(sequence, b)
        nativeKeys.seal(sequence, a, 4 + size)
        nodeKeys.seal(sequence, b, 4 + size)
        expect(a.toString("hex")).toBe(b.toString("hex"))
        expect(nodeKeys.open(sequence, a, 4 + size)?.toString("hex")).toBe(plain.subarray(4, 4 + size).toString("hex"))
        expect(nativeKeys.open(sequence, b, 4 + size)?.toString("hex")).toBe(plain.subarray(4, 4 + size).toString("hex"))
        const length = Buffer.from(a.subarray(0, 4))
        nativeKeys.cryptLength(sequence, length)
        expect(length.readUInt32BE(0)).toBe(size)
      }
    })

    it("refuse a packet with any bit flipped in length, body or tag, and leave it unchanged", () => {
      const gcmKey = randomBytes(16)
      const chachaKey = randomBytes(64)
      // large enough for the addon (smaller packets go to node:crypto)
      const size = NATIVE_FROM + 100
      const gcmSealed = packetOf(size)
      new AesGcmKeys("aes-128-gcm", gcmKey, Buffer.alloc(12), "encrypt", native).seal(gcmSealed, 4 + size)
      const chachaSealed = packetOf(size)
      new ChaChaPolyKeys(chachaKey, native).seal(7, chachaSealed, 4 + size)
      for (const index of [0, 3, 4, 50, 4 + size - 1, 4 + size, 4 + size + TAG - 1]) {
        const a = Buffer.from(gcmSealed)
        a[index] ^= 0x01
        const tampered = Buffer.from(a)
        expect(new AesGcmKeys("aes-128-gcm", gcmKey, Buffer.alloc(12), "decrypt", native).open(a, 4 + size)).toBeUndefined()
        expect(a.equals(tampered)).toBe(true)
        const c = Buffer.from(chachaSealed)
        c[index] ^= 0x01
        expect(new ChaChaPolyKeys(chachaKey, native).open(7, c, 4 + size)).toBeUndefined()
      }
      expect(new ChaChaPolyKeys(chachaKey, native).open(8, chachaSealed, 4 + size)).toBeUndefined()
    })

    it("throw a TypeError for bad arguments instead of reading or writing out of bounds", () => {
      const n = native!
      const gcm = n.gcmNew(randomBytes(16), true)
      const chacha = n.chachaNew(randomBytes(64))
      const nonce = Buffer.alloc(12)
      const packet = packetOf(32)
      const calls: Array<() => unknown> = [
        () => n.gcmNew(randomBytes(24), true),
        () => n.gcmNew("key" as never, true),
        () => n.gcmSeal(gcm, nonce, packet, packet.length - TAG + 1),
        () => n.gcmSeal(gcm, nonce, packet, 3),
        () => n.gcmSeal(gcm, Buffer.alloc(8), packet, 36),
        () => n.gcmSeal({} as never, nonce, packet, 36),
        () => n.gcmOpen(gcm, nonce, packet, 36, Buffer.alloc(31)),
        () => n.gcmOpen(gcm, nonce, packet, 4 + 32 + 1, Buffer.alloc(33)),
        () => n.gcmSealAround(gcm, nonce, Buffer.alloc(3), Buffer.alloc(8), Buffer.alloc(8), Buffer.alloc(16)),
        () => n.gcmSealAround(gcm, nonce, Buffer.alloc(8), Buffer.alloc(8), Buffer.alloc(7), Buffer.alloc(16)),
        () => n.gcmSealAround(gcm, nonce, Buffer.alloc(8), Buffer.alloc(8), Buffer.alloc(8), Buffer.alloc(15)),
        () => n.chachaNew(randomBytes(32)),
        () => n.chachaCryptLength(chacha, 0, Buffer.alloc(3)),
        () => n.chachaSeal(chacha, 0, packet, packet.length),
        () => n.chachaSeal(gcm, 0, packet, 36),
        () => n.gcmOpen(chacha, nonce, packet, 36, Buffer.alloc(32)),
        () => n.chachaOpen(chacha, 0, packet, 36, Buffer.alloc(33)),
        () => n.chachaOpen(chacha, 0, packet, 36, new Uint16Array(16) as never),
        () => (n.gcmSeal as (...args: Array<unknown>) => unknown)(gcm, nonce, packet)
      ]
      for (const call of calls) expect(call).toThrow(TypeError)
    })
  })
})
