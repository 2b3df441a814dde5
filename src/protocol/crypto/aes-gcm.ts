/**
 * AES-GCM for SSH (RFC 5647 §7, with OpenSSH's negotiation rules): the 12-byte nonce is a
 * 4-byte fixed field and an 8-byte invocation counter that grows by one per packet; the
 * 4-byte packet length is the additional authenticated data.
 */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from "node:crypto"
import { NATIVE_FROM, type NativeCiphers, type NativeHandle } from "./native.js"
import { receivedBuffer, releaseView, slabBuffer } from "./slab.js"

export const GCM_TAG_LENGTH = 16

/**
 * One direction's AES-GCM state: key and the running nonce. With the native addon one OpenSSL
 * context serves every packet once bulk data flows; node:crypto needs a new cipher object per
 * packet instead. Both advance the same nonce, so a direction may switch at any packet.
 */
export class AesGcmKeys {
  private readonly key: Buffer
  private readonly nonce: Buffer
  private native: NativeHandle | undefined

  constructor(
    private readonly algorithm: CipherGCMTypes,
    key: Uint8Array,
    iv: Uint8Array,
    private readonly direction: "encrypt" | "decrypt",
    /** The native addon, or undefined for node:crypto alone. */
    private readonly ciphers: NativeCiphers | undefined
  ) {
    if (iv.length < 12) throw new Error("AES-GCM needs a 12-byte IV")
    this.key = Buffer.from(key)
    this.nonce = Buffer.from(iv.subarray(0, 12))
  }

  /** The addon's context once a packet of NATIVE_FROM bytes has come; undefined: node:crypto serves. */
  private nativeFor(size: number): NativeHandle | undefined {
    if (this.native === undefined && this.ciphers !== undefined && size >= NATIVE_FROM) {
      this.native = { ciphers: this.ciphers, ctx: this.ciphers.gcmNew(this.key, this.direction === "encrypt") }
    }
    return this.native
  }

  /** Encrypts `packet[4..bodyEnd]` in place, authenticating `packet[0..4]`; writes the tag after the body. */
  seal(packet: Uint8Array, bodyEnd: number): void {
    const native = this.nativeFor(bodyEnd - 4)
    if (native !== undefined) {
      if (!native.ciphers.gcmSeal(native.ctx, this.nonce, packet, bodyEnd)) throw new Error("AES-GCM encryption failed")
      return
    }
    const cipher = createCipheriv(this.algorithm, this.key, this.nonce, { authTagLength: GCM_TAG_LENGTH })
    cipher.setAAD(packet.subarray(0, 4))
    packet.set(cipher.update(packet.subarray(4, bodyEnd)), 4)
    cipher.final()
    packet.set(cipher.getAuthTag(), bodyEnd)
    this.advance()
  }

  /**
   * Seals one packet lying in three pieces without joining them: `prefix` (the 4-byte length,
   * authenticated, then the start of the body) and `suffix` (the end of the body, then room for
   * the tag) are encrypted in place, `data` in between comes back as its ciphertext. The caller
   * sends prefix, ciphertext, suffix: three writes a packet, and the data is never copied first.
   */
  sealAround(prefix: Buffer, data: Uint8Array, suffix: Buffer): Buffer {
    const native = this.nativeFor(data.length)
    if (native !== undefined) {
      const sealed = slabBuffer(data.length)
      if (!native.ciphers.gcmSealAround(native.ctx, this.nonce, prefix, data, sealed, suffix)) throw new Error("AES-GCM encryption failed")
      return sealed
    }
    const cipher = createCipheriv(this.algorithm, this.key, this.nonce, { authTagLength: GCM_TAG_LENGTH })
    cipher.setAAD(prefix.subarray(0, 4))
    prefix.set(cipher.update(prefix.subarray(4)), 4)
    const sealed = cipher.update(data)
    const tagAt = suffix.length - GCM_TAG_LENGTH
    suffix.set(cipher.update(suffix.subarray(0, tagAt)), 0)
    cipher.final()
    suffix.set(cipher.getAuthTag(), tagAt)
    this.advance()
    return sealed
  }

  /** Decrypts `packet[4..bodyEnd]` and checks the tag after it; undefined when authentication fails. */
  open(packet: Uint8Array, bodyEnd: number): Buffer | undefined {
    const native = this.nativeFor(bodyEnd - 4)
    if (native !== undefined) {
      // Into a new buffer, not in place: the packet may lie in a socket's reused read buffer.
      const plain = receivedBuffer(bodyEnd - 4)
      if (native.ciphers.gcmOpen(native.ctx, this.nonce, packet, bodyEnd, plain)) return plain
      releaseView(plain)
      return undefined
    }
    const decipher = createDecipheriv(this.algorithm, this.key, this.nonce, { authTagLength: GCM_TAG_LENGTH })
    this.advance()
    decipher.setAAD(packet.subarray(0, 4))
    decipher.setAuthTag(packet.subarray(bodyEnd, bodyEnd + GCM_TAG_LENGTH))
    const plain = decipher.update(packet.subarray(4, bodyEnd))
    try {
      decipher.final()
    } catch {
      return undefined
    }
    return plain
  }

  /** The invocation counter is a 64-bit big-endian integer that wraps (RFC 5647 §7.1). */
  private advance(): void {
    for (let i = 11; i >= 4; i--) {
      this.nonce[i] = (this.nonce[i] + 1) & 0xff
      if (this.nonce[i] !== 0) return
    }
  }
}
