/**
 * The SSH binary packet protocol (RFC 4253 §6): framing, padding, encryption, MAC, sequence
 * numbers and compression, for one direction each. Encrypt-then-MAC follows OpenSSH PROTOCOL
 * §1.5, AES-GCM RFC 5647 §7, chacha20-poly1305 OpenSSH PROTOCOL.chacha20poly1305.
 */
import { concatBytes } from "../wire/writer.js"
import { createCipheriv, createDecipheriv, randomFillSync, timingSafeEqual } from "node:crypto"
import { AesGcmKeys, GCM_TAG_LENGTH } from "../crypto/aes-gcm.js"
import { CHACHA_POLY_TAG_LENGTH, ChaChaPolyKeys } from "../crypto/chacha20-poly1305.js"
import { cipherEngine } from "../crypto/ciphers.js"
import { createPacketMac, type PacketMac } from "../crypto/macs.js"
import { nativeCiphers } from "../crypto/native.js"
import { DisconnectReason, ProtocolError } from "../wire/errors.js"
import { PacketCompressor, PacketDecompressor, type CompressionMethod } from "./compression.js"

/** Keys for one direction, as derived by the key exchange (RFC 4253 §7.2). */
export interface DirectionKeys {
  readonly cipher: string
  /** Ignored for AEAD ciphers. */
  readonly mac: string
  readonly encKey: Uint8Array
  readonly iv: Uint8Array
  readonly macKey: Uint8Array
}

/** 256 KiB of packet plus room for the header, as OpenSSH accepts. */
export const DEFAULT_MAX_PACKET_LENGTH = 256 * 1024 + 64

/** Receive buffer capacity kept once drained; larger ones are dropped. */

const EMPTY_BUFFER = Buffer.alloc(0)

/** A CTR or CBC cipher object whose state runs across packets. */
interface StreamCipher {
  update(data: Uint8Array): Buffer
}

type Protection =
  | {
      readonly kind: "stream"
      /** undefined for the "none" cipher. */
      readonly cipher: StreamCipher | undefined
      readonly mac: PacketMac
      readonly blockSize: number
      readonly tagLength: number
      readonly lengthOutsideAlignment: boolean
    }
  | {
      readonly kind: "aes-gcm"
      readonly keys: AesGcmKeys
      readonly blockSize: number
      readonly tagLength: number
      readonly lengthOutsideAlignment: true
    }
  | {
      readonly kind: "chacha20-poly1305"
      readonly keys: ChaChaPolyKeys
      readonly blockSize: number
      readonly tagLength: number
      readonly lengthOutsideAlignment: true
    }

const INITIAL_KEYS: DirectionKeys = {
  cipher: "none",
  mac: "none",
  encKey: new Uint8Array(0),
  iv: new Uint8Array(0),
  macKey: new Uint8Array(0)
}

function requireLength(what: string, bytes: Uint8Array, length: number): Uint8Array {
  if (bytes.length < length) throw new Error(`${what} needs ${length} bytes, got ${bytes.length}`)
  return bytes.subarray(0, length)
}

function protectionFor(keys: DirectionKeys, direction: "encrypt" | "decrypt"): Protection {
  const spec = cipherEngine(keys.cipher)
  const blockSize = Math.max(spec.blockSize, 8)
  const key = requireLength(`cipher ${keys.cipher} key`, keys.encKey, spec.keyLength)
  const iv = requireLength(`cipher ${keys.cipher} IV`, keys.iv, spec.ivLength)
  const engine = spec.engine
  switch (engine.kind) {
    case "aes-gcm":
      return {
        kind: "aes-gcm",
        keys: new AesGcmKeys(engine.algorithm, key, iv, direction, nativeCiphers),
        blockSize,
        tagLength: GCM_TAG_LENGTH,
        lengthOutsideAlignment: true
      }
    case "chacha20-poly1305":
      return {
        kind: "chacha20-poly1305",
        keys: new ChaChaPolyKeys(key, nativeCiphers),
        blockSize,
        tagLength: CHACHA_POLY_TAG_LENGTH,
        lengthOutsideAlignment: true
      }
    case "none":
    case "stream": {
      let cipher: StreamCipher | undefined
      if (engine.kind === "stream") {
        const c =
          direction === "encrypt"
            ? createCipheriv(engine.algorithm, key, iv)
            : createDecipheriv(engine.algorithm, key, iv)
        // SSH pads packets itself; CBC must not add or strip PKCS#7 padding.
        c.setAutoPadding(false)
        cipher = c
      }
      const mac = createPacketMac(keys.mac, keys.macKey)
      return { kind: "stream", cipher, mac, blockSize, tagLength: mac.length, lengthOutsideAlignment: mac.etm }
    }
  }
}

/** Hands out padding bytes from a refilled pool: one OpenSSL call per few hundred packets. */
/**
 * Padding bytes from one process-wide pool, refilled 4 KiB at a time: one randomFillSync per
 * ~200 packets instead of one per packet, and no pool per connection. Padding only has to be
 * unpredictable, and each byte is handed out once.
 */
const sharedRandomFill: (target: Uint8Array) => void = (() => {
  const pool = Buffer.allocUnsafe(4096)
  let pos = pool.length
  return (target: Uint8Array) => {
    if (pos + target.length > pool.length) {
      randomFillSync(pool)
      pos = 0
    }
    target.set(pool.subarray(pos, pos + target.length))
    pos += target.length
  }
})()

/** Turns payloads into wire packets for one direction. */
export class PacketEncoder {
  private seq = 0
  private protection: Protection = protectionFor(INITIAL_KEYS, "encrypt")
  private compressor: PacketCompressor | undefined
  private bytes = 0
  private packets = 0
  private readonly fillRandom: (target: Uint8Array) => void

  constructor(options?: { readonly randomBytes?: (n: number) => Uint8Array }) {
    const randomBytes = options?.randomBytes
    this.fillRandom =
      randomBytes === undefined
        ? sharedRandomFill
        : (target) => {
            const bytes = randomBytes(target.length)
            // A short answer would leave uninitialised memory in the padding.
            if (bytes.length !== target.length) throw new Error("randomBytes returned the wrong number of bytes")
            target.set(bytes)
          }
  }

  /** The sequence number the next packet will carry. */
  get sequence(): number {
    return this.seq
  }

  get bytesSinceKeys(): number {
    return this.bytes
  }

  get packetsSinceKeys(): number {
    return this.packets
  }

  /** Builds the full wire bytes of one packet in a single buffer and advances the sequence number. */
  encode(payload: Uint8Array): Uint8Array {
    const body = this.compressor === undefined ? payload : this.compressor.compress(payload)
    const p = this.protection
    const aligned = p.lengthOutsideAlignment ? 1 + body.length : 5 + body.length
    let padding = p.blockSize - (aligned % p.blockSize)
    if (padding < 4) padding += p.blockSize
    const packetLength = 1 + body.length + padding
    const bodyEnd = 4 + packetLength
    const out = Buffer.allocUnsafe(bodyEnd + p.tagLength)
    out.writeUInt32BE(packetLength, 0)
    out[4] = padding
    out.set(body, 5)
    this.fillRandom(out.subarray(bodyEnd - padding, bodyEnd))
    const seq = this.seq
    switch (p.kind) {
      case "stream":
        if (p.mac.etm) {
          if (p.cipher !== undefined) out.set(p.cipher.update(out.subarray(4, bodyEnd)), 4)
          out.set(p.mac.compute(seq, out.subarray(0, bodyEnd)), bodyEnd)
        } else {
          const tag = p.mac.compute(seq, out.subarray(0, bodyEnd))
          if (p.cipher !== undefined) out.set(p.cipher.update(out.subarray(0, bodyEnd)), 0)
          out.set(tag, bodyEnd)
        }
        break
      case "aes-gcm":
        p.keys.seal(out, bodyEnd)
        break
      case "chacha20-poly1305":
        p.keys.cryptLength(seq, out)
        p.keys.seal(seq, out, bodyEnd)
        break
    }
    this.seq = (seq + 1) >>> 0
    this.bytes += out.length
    this.packets++
    return out
  }

  /**
   * Encodes the payload `head ‖ data` — a data message's small header and its bytes — as wire
   * parts for a gathered write. With AES-GCM (the default) and no compression, `data` goes to
   * the cipher where it lies: no copy of the payload is ever made. Other modes join the two
   * and take the one-buffer path.
   */
  encodeGathered(head: Uint8Array, data: Uint8Array): ReadonlyArray<Uint8Array> {
    const p = this.protection
    if (p.kind !== "aes-gcm" || this.compressor !== undefined) return [this.encode(concatBytes(head, data))]
    const bodyLength = head.length + data.length
    let padding = p.blockSize - ((1 + bodyLength) % p.blockSize)
    if (padding < 4) padding += p.blockSize
    const packetLength = 1 + bodyLength + padding
    const prefix = Buffer.allocUnsafe(5 + head.length)
    prefix.writeUInt32BE(packetLength, 0)
    prefix[4] = padding
    prefix.set(head, 5)
    const suffix = Buffer.allocUnsafe(padding + p.tagLength)
    this.fillRandom(suffix.subarray(0, padding))
    const sealed = p.keys.sealAround(prefix, data, suffix)
    this.seq = (this.seq + 1) >>> 0
    this.bytes += 4 + packetLength + p.tagLength
    this.packets++
    return [prefix, sealed, suffix]
  }

  /** Switches to new keys (after sending NEWKEYS); the next packet uses them. */
  setKeys(keys: DirectionKeys): void {
    this.protection = protectionFor(keys, "encrypt")
    this.bytes = 0
    this.packets = 0
  }

  /**
   * Compresses every later packet. "zlib" and "zlib@openssh.com" are the same stream and differ
   * only in when the caller starts it; a second call (after a rekey) keeps the running stream.
   */
  startCompression(_method: CompressionMethod): void {
    this.compressor ??= new PacketCompressor()
  }

  /** Strict kex: the sequence number restarts at 0 after NEWKEYS. */
  resetSequence(): void {
    this.seq = 0
  }
}

/**
 * Receive buffers between uses. A decoder needs one of its own only while a packet straddles
 * reads; it takes one here and gives it back as soon as nothing is pending. Shared by every
 * connection of the process, so an idle connection holds none and a bulk transfer allocates
 * none. Left to the GC, they were 25–40% more new memory per MiB received (a grown buffer of
 * up to 2 × (packet + read) whenever a packet straddled reads after an aligned one); reused,
 * an upload's scavenges fell from 20–22 to 18–19 per 256 MiB (its CPU did not measurably
 * change). Payloads are never views of these buffers, so reuse is safe.
 */
const spareBuffers: Array<Buffer> = []
const MAX_SPARE_BUFFERS = 4
const SPARE_MIN = 64 * 1024
const SPARE_MAX = 2 * 1024 * 1024

function takeReceiveBuffer(min: number): Buffer {
  const i = spareBuffers.findIndex((b) => b.length >= min)
  if (i >= 0) return spareBuffers.splice(i, 1)[0]!
  return Buffer.allocUnsafe(min)
}

function giveBackReceiveBuffer(buffer: Buffer): void {
  if (buffer.length >= SPARE_MIN && buffer.length <= SPARE_MAX && spareBuffers.length < MAX_SPARE_BUFFERS) spareBuffers.push(buffer)
}

/** Turns received bytes into payloads for one direction, one packet per `next()`. */
export class PacketDecoder {
  private seq = 0
  private protection: Protection = protectionFor(INITIAL_KEYS, "decrypt")
  private decompressor: PacketDecompressor | undefined
  private bytes = 0
  private packets = 0
  private readonly maxPacketLength: number
  private buf: Buffer = EMPTY_BUFFER
  /** Whether `buf` is the caller's last chunk rather than our own copy. */
  private borrowed = false
  /** Whether `buf` came from `takeReceiveBuffer` (and goes back there). */
  private owned = false
  private start = 0
  private end = 0
  /** packet_length of the packet being read, once its header has been decoded; -1 before. */
  private pendingLength = -1
  /** The decrypted first cipher block, for ciphers whose length is encrypted with the stream. */
  private firstBlock: Buffer | undefined

  constructor(options?: { readonly maxPacketLength?: number }) {
    this.maxPacketLength = options?.maxPacketLength ?? DEFAULT_MAX_PACKET_LENGTH
  }

  /** The sequence number the next packet is expected to carry. */
  get sequence(): number {
    return this.seq
  }

  get bytesSinceKeys(): number {
    return this.bytes
  }

  get packetsSinceKeys(): number {
    return this.packets
  }

  /** Bytes received and not yet consumed by `next()`. */
  get buffered(): number {
    return this.end - this.start
  }

  /**
   * Takes received bytes. When nothing is pending the chunk is used where it lies, not copied:
   * packets are decoded straight from it. A chunk the caller will reuse is borrowed, and
   * `detach()` copies out whatever is left before the caller gets it back; a `given` chunk
   * (a socket's "data" event hands out a new buffer each time) is simply kept. Otherwise the
   * chunk is appended to what is pending.
   */
  push(chunk: Uint8Array, given = false): void {
    if (chunk.length === 0) return
    const live = this.end - this.start
    if (live === 0) {
      if (this.owned) giveBackReceiveBuffer(this.buf)
      this.owned = false
      this.buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
      this.borrowed = !given
      this.start = 0
      this.end = chunk.length
      return
    }
    if (this.borrowed || this.end + chunk.length > this.buf.length) {
      if (this.owned && live + chunk.length <= this.buf.length) {
        this.buf.copyWithin(0, this.start, this.end)
      } else {
        // Room for as much again: a bulk transfer whose packets straddle reads then compacts
        // into this buffer from read to read, and byte-at-a-time feeding does not reallocate
        // on every push.
        const grown = takeReceiveBuffer(2 * (live + chunk.length) + 16384)
        this.buf.copy(grown, 0, this.start, this.end)
        if (this.owned) giveBackReceiveBuffer(this.buf)
        this.buf = grown
        this.owned = true
        this.borrowed = false
      }
      this.start = 0
      this.end = live
    }
    this.buf.set(chunk, this.end)
    this.end += chunk.length
  }

  /** Stops borrowing the last pushed chunk: copies out the bytes not decoded yet. */
  detach(): void {
    if (!this.borrowed) return
    this.borrowed = false
    const live = this.end - this.start
    if (live === 0) {
      this.buf = EMPTY_BUFFER
    } else {
      const own = takeReceiveBuffer(live)
      this.buf.copy(own, 0, this.start, this.end)
      this.buf = own
      this.owned = true
    }
    this.start = 0
    this.end = live
  }

  /**
   * Decodes the next packet if it is complete and returns its payload (decrypted, verified,
   * decompressed), or undefined when more bytes are needed. Only one packet is decoded per
   * call, so the caller can switch keys right after NEWKEYS.
   */
  next(): Uint8Array | undefined {
    const p = this.protection
    const available = this.end - this.start
    if (this.pendingLength < 0) {
      const length = this.readLength(p, available)
      if (length === undefined) return undefined
      this.checkLength(p, length)
      this.pendingLength = length
    }
    const length = this.pendingLength
    const bodyEnd = 4 + length
    const total = bodyEnd + p.tagLength
    if (available < total) return undefined
    const packet = this.buf.subarray(this.start, this.start + total)
    const seq = this.seq
    let plain: Buffer | undefined
    switch (p.kind) {
      case "stream":
        plain = p.mac.etm ? this.openEncryptThenMac(p.cipher, p.mac, packet, bodyEnd) : this.openMacThenEncrypt(p, packet, bodyEnd)
        break
      case "aes-gcm":
        plain = p.keys.open(packet, bodyEnd)
        break
      case "chacha20-poly1305":
        plain = p.keys.open(seq, packet, bodyEnd)
        break
    }
    if (plain === undefined) {
      throw new ProtocolError("mac", `corrupted MAC on input (packet ${seq})`, DisconnectReason.MAC_ERROR, { sequence: seq })
    }
    // `plain` starts at padding_length; checked only after authentication, so no oracle.
    const padding = plain[0]
    if (padding < 4 || padding >= length) {
      throw new ProtocolError("protocol", `bad padding length ${padding} for packet length ${length}`)
    }
    this.start += total
    if (this.start === this.end) this.releaseBuffer()
    this.pendingLength = -1
    this.firstBlock = undefined
    this.seq = (seq + 1) >>> 0
    this.bytes += total
    this.packets++
    const payload = plain.subarray(1, length - padding)
    return this.decompressor === undefined ? payload : this.decompressor.decompress(payload)
  }

  /** Switches to new keys (after receiving NEWKEYS); the next packet is read with them. */
  setKeys(keys: DirectionKeys): void {
    if (this.pendingLength >= 0) throw new Error("setKeys called while a packet is half read")
    this.protection = protectionFor(keys, "decrypt")
    this.bytes = 0
    this.packets = 0
  }

  /** Decompresses every later packet; a second call keeps the running stream (see PacketEncoder). */
  startCompression(_method: CompressionMethod): void {
    this.decompressor ??= new PacketDecompressor(this.maxPacketLength)
  }

  /** Strict kex: the sequence number restarts at 0 after NEWKEYS. */
  resetSequence(): void {
    this.seq = 0
  }

  /** Nothing pending: an idle connection keeps no receive buffer. */
  private releaseBuffer(): void {
    this.start = this.end = 0
    if (this.owned) giveBackReceiveBuffer(this.buf)
    this.owned = false
    this.buf = EMPTY_BUFFER
    this.borrowed = false
  }

  private readLength(p: Protection, available: number): number | undefined {
    if (p.kind === "stream" && !p.mac.etm) {
      // The length sits inside the first encrypted block, which the running cipher consumes now.
      if (available < p.blockSize) return undefined
      const head = this.buf.subarray(this.start, this.start + p.blockSize)
      this.firstBlock = p.cipher === undefined ? Buffer.from(head) : p.cipher.update(head)
      return this.firstBlock.readUInt32BE(0)
    }
    if (available < 4) return undefined
    if (p.kind === "chacha20-poly1305") {
      const field = Buffer.from(this.buf.subarray(this.start, this.start + 4))
      p.keys.cryptLength(this.seq, field)
      return field.readUInt32BE(0)
    }
    return this.buf.readUInt32BE(this.start)
  }

  private checkLength(p: Protection, length: number): void {
    if (length > this.maxPacketLength) {
      throw new ProtocolError("packet-too-large", `packet length ${length} exceeds ${this.maxPacketLength}`, DisconnectReason.PROTOCOL_ERROR, {
        length,
        max: this.maxPacketLength
      })
    }
    const aligned = p.lengthOutsideAlignment ? length : length + 4
    if (length < 5 || aligned % p.blockSize !== 0) {
      throw new ProtocolError("protocol", `bad packet length ${length} (block size ${p.blockSize})`)
    }
  }

  private openEncryptThenMac(cipher: StreamCipher | undefined, mac: PacketMac, packet: Buffer, bodyEnd: number): Buffer | undefined {
    if (!this.tagMatches(mac.compute(this.seq, packet.subarray(0, bodyEnd)), packet.subarray(bodyEnd))) return undefined
    const body = packet.subarray(4, bodyEnd)
    return cipher === undefined ? Buffer.from(body) : cipher.update(body)
  }

  private openMacThenEncrypt(p: Protection & { kind: "stream" }, packet: Buffer, bodyEnd: number): Buffer | undefined {
    const first = this.firstBlock as Buffer
    const whole = Buffer.allocUnsafe(bodyEnd)
    whole.set(first)
    const rest = packet.subarray(first.length, bodyEnd)
    whole.set(p.cipher === undefined ? rest : p.cipher.update(rest), first.length)
    if (!this.tagMatches(p.mac.compute(this.seq, whole), packet.subarray(bodyEnd))) return undefined
    return whole.subarray(4)
  }

  private tagMatches(expected: Uint8Array, received: Uint8Array): boolean {
    return expected.length === received.length && timingSafeEqual(expected, received)
  }
}
