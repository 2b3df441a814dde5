import { WireError } from "./errors.js"

const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * Reads SSH data types (RFC 4251 §5) from one message. Every length is checked against
 * what remains before it is used; strings are returned as subarrays, never copied.
 */
export class SshReader {
  private pos: number
  constructor(
    private readonly buf: Uint8Array,
    offset = 0
  ) {
    this.pos = offset
  }

  get offset(): number {
    return this.pos
  }
  get remaining(): number {
    return this.buf.length - this.pos
  }

  private need(n: number, what: string): void {
    if (n > this.buf.length - this.pos) {
      throw new WireError(`truncated ${what}: need ${n} bytes, have ${this.buf.length - this.pos}`)
    }
  }

  byte(): number {
    this.need(1, "byte")
    return this.buf[this.pos++]!
  }

  bool(): boolean {
    return this.byte() !== 0
  }

  uint32(): number {
    this.need(4, "uint32")
    const b = this.buf
    const p = this.pos
    this.pos += 4
    return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0
  }

  uint64(): bigint {
    const hi = this.uint32()
    const lo = this.uint32()
    return (BigInt(hi) << 32n) | BigInt(lo)
  }

  /** A length-prefixed byte string, as a view into the message. */
  string(): Uint8Array {
    const len = this.uint32()
    this.need(len, "string")
    const s = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return s
  }

  /** A string that must be valid UTF-8. */
  utf8(): string {
    const bytes = this.string()
    try {
      return utf8.decode(bytes)
    } catch {
      throw new WireError("string is not valid UTF-8")
    }
  }

  /** A string decoded as Latin-1/ASCII, for algorithm names and other US-ASCII fields. */
  ascii(): string {
    const bytes = this.string()
    // in one native pass: char by char builds a string per character (a KEXINIT name-list: thousands)
    if (bytes.length > 8) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("latin1")
    let s = ""
    for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!)
    return s
  }

  nameList(): string[] {
    const s = this.ascii()
    return s.length === 0 ? [] : s.split(",")
  }

  /** A multiple-precision integer in two's complement (RFC 4251 §5). */
  mpint(): bigint {
    const bytes = this.string()
    if (bytes.length === 0) return 0n
    let v = 0n
    for (let i = 0; i < bytes.length; i++) v = (v << 8n) | BigInt(bytes[i]!)
    if (bytes[0]! & 0x80) v -= 1n << BigInt(bytes.length * 8)
    return v
  }

  /** The raw bytes of an mpint, without its leading sign byte. */
  mpintBytes(): Uint8Array {
    const bytes = this.string()
    let i = 0
    while (i < bytes.length - 1 && bytes[i] === 0) i++
    return bytes.subarray(i)
  }

  bytes(n: number): Uint8Array {
    this.need(n, "bytes")
    const s = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return s
  }

  /** Everything not read yet. */
  rest(): Uint8Array {
    const s = this.buf.subarray(this.pos)
    this.pos = this.buf.length
    return s
  }

  /** Fails when bytes are left over: a message must be consumed exactly when that matters. */
  end(): void {
    if (this.pos !== this.buf.length) throw new WireError(`${this.buf.length - this.pos} unexpected trailing bytes`)
  }
}
