/**
 * chacha20-poly1305@openssh.com (OpenSSH PROTOCOL.chacha20poly1305,
 * draft-ietf-sshm-chacha20-poly1305). The 64-byte key splits into K_2 (first 32 bytes,
 * payload and Poly1305 key) and K_1 (last 32 bytes, packet length only). The nonce is the
 * packet sequence number.
 *
 * OpenSSH runs the original ChaCha20 (64-bit block counter, 64-bit nonce). OpenSSL's
 * "chacha20" takes a 16-byte IV read as a 32-bit little-endian counter then a 96-bit
 * nonce; as state words both are counter(lo) || counter(hi) || nonce(lo) || nonce(hi), so the
 * IV is counter as 8 little-endian bytes followed by the sequence number as 8 big-endian bytes.
 */
import { createCipheriv, timingSafeEqual, type Cipher } from "node:crypto"
import { NATIVE_FROM, type NativeCiphers, type NativeHandle } from "./native.js"
import { receivedBuffer, releaseView } from "./slab.js"
import { poly1305 } from "./poly1305.js"

export const CHACHA_POLY_TAG_LENGTH = 16

const ZERO_BLOCK = Buffer.alloc(64)

/** One direction's chacha20-poly1305@openssh.com state: just the two keys (the nonce is the sequence number). */
export class ChaChaPolyKeys {
  private readonly mainKey: Buffer
  private readonly headerKey: Buffer
  private readonly iv = Buffer.alloc(16)
  /** The addon's context (OpenSSL's chacha20 and Poly1305), made at the first large packet. */
  private native: NativeHandle | undefined

  constructor(
    key: Uint8Array,
    /** The native addon, or undefined for node:crypto and our Poly1305. */
    private readonly ciphers: NativeCiphers | undefined
  ) {
    if (key.length < 64) throw new Error("chacha20-poly1305@openssh.com needs a 64-byte key")
    this.mainKey = Buffer.from(key.subarray(0, 32))
    this.headerKey = Buffer.from(key.subarray(32, 64))
  }

  /** As AesGcmKeys.nativeFor: the packets are independent, so either path may take any of them. */
  private nativeFor(size: number): NativeHandle | undefined {
    if (this.native === undefined && this.ciphers !== undefined && size >= NATIVE_FROM) {
      this.native = { ciphers: this.ciphers, ctx: this.ciphers.chachaNew(Buffer.concat([this.mainKey, this.headerKey])) }
    }
    return this.native
  }

  /** XORs the 4-byte packet length field in place, encrypting or decrypting it. */
  cryptLength(sequence: number, field: Uint8Array): void {
    const native = this.native
    if (native !== undefined) {
      if (!native.ciphers.chachaCryptLength(native.ctx, sequence, field)) throw new Error("chacha20 failed")
      return
    }
    const plain = this.stream(this.headerKey, sequence).update(field.subarray(0, 4))
    field.set(plain)
  }

  /**
   * Encrypts `packet` (length already encrypted in bytes 0..4, plaintext after) in place
   * and writes the tag at `packet[bodyEnd..bodyEnd+16]`.
   */
  seal(sequence: number, packet: Uint8Array, bodyEnd: number): void {
    const native = this.nativeFor(bodyEnd - 4)
    if (native !== undefined) {
      if (!native.ciphers.chachaSeal(native.ctx, sequence, packet, bodyEnd)) throw new Error("chacha20-poly1305 encryption failed")
      return
    }
    const cipher = this.stream(this.mainKey, sequence)
    const polyKey = cipher.update(ZERO_BLOCK).subarray(0, 32)
    packet.set(cipher.update(packet.subarray(4, bodyEnd)), 4)
    packet.set(poly1305(packet.subarray(0, bodyEnd), polyKey), bodyEnd)
  }

  /**
   * Checks the tag over `packet[0..bodyEnd]` (encrypted length and body) and, if it holds,
   * returns the decrypted body; undefined when the tag is wrong.
   */
  open(sequence: number, packet: Uint8Array, bodyEnd: number): Buffer | undefined {
    const native = this.nativeFor(bodyEnd - 4)
    if (native !== undefined) {
      // Into a new buffer, not in place: the packet may lie in a socket's reused read buffer.
      const plain = receivedBuffer(bodyEnd - 4)
      if (native.ciphers.chachaOpen(native.ctx, sequence, packet, bodyEnd, plain)) return plain
      releaseView(plain)
      return undefined
    }
    const cipher = this.stream(this.mainKey, sequence)
    const polyKey = cipher.update(ZERO_BLOCK).subarray(0, 32)
    const expected = poly1305(packet.subarray(0, bodyEnd), polyKey)
    const tag = packet.subarray(bodyEnd, bodyEnd + CHACHA_POLY_TAG_LENGTH)
    if (tag.length !== CHACHA_POLY_TAG_LENGTH || !timingSafeEqual(expected, tag)) return undefined
    return cipher.update(packet.subarray(4, bodyEnd))
  }

  private stream(key: Buffer, sequence: number): Cipher {
    // Counter 0 (bytes 0..8), then the nonce: uint64 big-endian sequence number whose top half is 0.
    this.iv.writeUInt32BE(sequence >>> 0, 12)
    return createCipheriv("chacha20", key, this.iv)
  }
}
