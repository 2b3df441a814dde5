const encoder = new TextEncoder()

/**
 * Builds SSH messages. The buffer grows by doubling; `finish()` returns a view of what
 * was written. Hot paths that know their size up front write into a pre-sized buffer instead.
 */
export class SshWriter {
  private buf: Uint8Array
  private view: DataView
  private pos = 0

  constructor(initialSize = 256) {
    this.buf = new Uint8Array(initialSize)
    this.view = new DataView(this.buf.buffer)
  }

  get length(): number {
    return this.pos
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  byte(v: number): this {
    this.ensure(1)
    this.buf[this.pos++] = v
    return this
  }

  bool(v: boolean): this {
    return this.byte(v ? 1 : 0)
  }

  uint32(v: number): this {
    this.ensure(4)
    this.view.setUint32(this.pos, v >>> 0)
    this.pos += 4
    return this
  }

  uint64(v: bigint): this {
    this.ensure(8)
    this.view.setBigUint64(this.pos, v)
    this.pos += 8
    return this
  }

  /** Raw bytes, no length prefix. */
  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
    return this
  }

  /** A length-prefixed string: bytes as they are, text as UTF-8. */
  string(v: Uint8Array | string): this {
    const bytes = typeof v === "string" ? encoder.encode(v) : v
    this.uint32(bytes.length)
    return this.raw(bytes)
  }

  nameList(names: ReadonlyArray<string>): this {
    return this.string(names.join(","))
  }

  /** An mpint from a bigint (two's complement, minimal length). */
  mpint(v: bigint): this {
    return this.string(mpintEncode(v))
  }

  /** An mpint from unsigned big-endian magnitude bytes (as node:crypto returns them). */
  mpintFromUnsigned(bytes: Uint8Array): this {
    let i = 0
    while (i < bytes.length && bytes[i] === 0) i++
    const mag = bytes.subarray(i)
    if (mag.length > 0 && mag[0]! & 0x80) {
      this.uint32(mag.length + 1)
      this.byte(0)
      return this.raw(mag)
    }
    return this.string(mag)
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos)
  }
}

export function mpintEncode(v: bigint): Uint8Array {
  if (v === 0n) return new Uint8Array(0)
  const negative = v < 0n
  let hex = (negative ? -v : v).toString(16)
  if (hex.length % 2) hex = "0" + hex
  let bytes: Uint8Array = Uint8Array.from(Buffer.from(hex, "hex"))
  if (negative) {
    // two's complement of the magnitude
    let carry = 1
    for (let i = bytes.length - 1; i >= 0; i--) {
      const b = (~bytes[i]! & 0xff) + carry
      bytes[i] = b & 0xff
      carry = b >> 8
    }
    if (!(bytes[0]! & 0x80)) bytes = concatBytes(Uint8Array.of(0xff), bytes)
  } else if (bytes[0]! & 0x80) {
    bytes = concatBytes(Uint8Array.of(0), bytes)
  }
  return bytes
}

export function concatBytes(...parts: ReadonlyArray<Uint8Array>): Uint8Array {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** Builds a message from a callback: `message(w => w.byte(5).string("ssh-userauth"))`. */
export function message(build: (w: SshWriter) => unknown, sizeHint = 64): Uint8Array {
  const w = new SshWriter(sizeHint)
  build(w)
  return w.finish()
}
