/**
 * Poly1305 (RFC 8439 §2.5) for chacha20-poly1305@openssh.com. node:crypto exposes no raw
 * Poly1305 and JavaScript's 32-bit integer arithmetic holds it to ~170 MB/s, so the block loop
 * runs as a small WebAssembly function with 64-bit multiplies (the 26-bit-limb scheme of
 * poly1305-donna-32). The module is assembled below from readable instructions, not loaded
 * from an opaque blob; key setup and the final reduction stay in TypeScript.
 */

// ---- a minimal WebAssembly encoder, just what the block function needs ----

const I32 = 0x7f
const I64 = 0x7e

function uleb(n: number): Array<number> {
  const out: Array<number> = []
  do {
    let byte = n & 0x7f
    n >>>= 7
    if (n !== 0) byte |= 0x80
    out.push(byte)
  } while (n !== 0)
  return out
}

function sleb(n: number): Array<number> {
  const out: Array<number> = []
  for (;;) {
    const byte = n & 0x7f
    n >>= 7
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte)
      return out
    }
    out.push(byte | 0x80)
  }
}

const get = (i: number) => [0x20, ...uleb(i)]
const set = (i: number) => [0x21, ...uleb(i)]
const i32Const = (n: number) => [0x41, ...sleb(n)]
const i64Const = (n: number) => [0x42, ...sleb(n)]
const load32u = (offset: number) => [0x35, 0, ...uleb(offset)] // i64.load32_u, align 1
const load64 = (offset: number) => [0x29, 3, ...uleb(offset)]
const store64 = (offset: number) => [0x37, 3, ...uleb(offset)]
const I32_ADD = 0x6a
const I32_SUB = 0x6b
const I32_LT_U = 0x49
const I32_GE_U = 0x4f
const I64_ADD = 0x7c
const I64_MUL = 0x7e
const I64_AND = 0x83
const I64_OR = 0x84
const I64_SHR_U = 0x88
const BLOCK = [0x02, 0x40]
const LOOP = [0x03, 0x40]
const BR_IF = (depth: number) => [0x0d, depth]
const END = 0x0b

function section(id: number, body: Array<number>): Array<number> {
  return [id, ...uleb(body.length), ...body]
}

function name(s: string): Array<number> {
  return [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))]
}

/** State layout in linear memory: r0..r4, s1..s4, h0..h4 as little-endian u64; messages follow. */
const STATE_R = 0
const STATE_S = 40
const STATE_H = 72
const MESSAGE = 128
const MASK26 = 0x3ffffff

/**
 * `blocks(ptr: i32, len: i32, hibit: i64)`: absorbs the 16-byte blocks in [ptr, ptr+len) into h.
 * Locals: 0 ptr, 1 len, 2 hibit, 3..7 r0..r4, 8..11 s1..s4, 12..16 h0..h4, 17..21 d0..d4.
 */
function blocksFunction(): Array<number> {
  const r = (i: number) => 3 + i
  const s = (i: number) => 7 + i // s1..s4 at 8..11
  const h = (i: number) => 12 + i
  const d = (i: number) => 17 + i
  const code: Array<number> = []
  const emit = (...parts: Array<number | Array<number>>) => {
    for (const p of parts) typeof p === "number" ? code.push(p) : code.push(...p)
  }
  const zero = [...i32Const(0)]
  for (let i = 0; i < 5; i++) emit(zero, load64(STATE_R + 8 * i), set(r(i)))
  for (let i = 1; i < 5; i++) emit(zero, load64(STATE_S + 8 * (i - 1)), set(s(i)))
  for (let i = 0; i < 5; i++) emit(zero, load64(STATE_H + 8 * i), set(h(i)))
  emit(BLOCK, get(1), i32Const(16), I32_LT_U, BR_IF(0), LOOP)
  // h += m, the block split into 26-bit limbs with the 2^128 bit (hibit) on top.
  const limbs: Array<[number, number]> = [[0, 0], [3, 2], [6, 4], [9, 6], [12, 8]]
  for (const [i, [offset, shift]] of limbs.entries()) {
    emit(get(h(i)), get(0), load32u(offset))
    if (shift !== 0) emit(i64Const(shift), I64_SHR_U)
    if (i < 4) emit(i64Const(MASK26), I64_AND)
    else emit(get(2), I64_OR)
    emit(I64_ADD, set(h(i)))
  }
  // d = h * r mod 2^130 - 5, with s_i = 5 r_i folding the high terms back.
  const coefficient = (row: number, col: number): number => (col <= row ? r(row - col) : s(5 + row - col))
  for (let row = 0; row < 5; row++) {
    for (let col = 0; col < 5; col++) {
      emit(get(h(col)), get(coefficient(row, col)), I64_MUL)
      if (col > 0) emit(I64_ADD)
    }
    emit(set(d(row)))
  }
  // Partial carry: h_i = d_i mod 2^26, carrying upward and folding the top carry times 5.
  for (let i = 0; i < 5; i++) {
    if (i > 0) emit(get(d(i)), get(d(i - 1)), i64Const(26), I64_SHR_U, I64_ADD, set(d(i)))
    emit(get(d(i)), i64Const(MASK26), I64_AND, set(h(i)))
  }
  emit(get(h(0)), get(d(4)), i64Const(26), I64_SHR_U, i64Const(5), I64_MUL, I64_ADD, set(h(0)))
  emit(get(h(1)), get(h(0)), i64Const(26), I64_SHR_U, I64_ADD, set(h(1)))
  emit(get(h(0)), i64Const(MASK26), I64_AND, set(h(0)))
  emit(get(0), i32Const(16), I32_ADD, set(0))
  emit(get(1), i32Const(16), I32_SUB, set(1))
  emit(get(1), i32Const(16), I32_GE_U, BR_IF(0), END, END)
  for (let i = 0; i < 5; i++) emit(zero, get(h(i)), store64(STATE_H + 8 * i))
  emit(END)
  const locals = [1, ...uleb(19), I64]
  const body = [...locals, ...code]
  return [...uleb(body.length), ...body]
}

function assemble(): Uint8Array {
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [1, 0x60, 3, I32, I32, I64, 0]),
    ...section(3, [1, 0]),
    ...section(5, [1, 0x00, 1]),
    ...section(7, [2, ...name("blocks"), 0x00, 0, ...name("memory"), 0x02, 0]),
    ...section(10, [1, ...blocksFunction()])
  ])
}

interface PolyExports {
  readonly blocks: (ptr: number, len: number, hibit: bigint) => void
  readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number }
}

/** The project's type libraries (ES2023, no DOM) do not declare WebAssembly; this is the slice used. */
interface WebAssemblyApi {
  readonly Module: new (bytes: Uint8Array) => object
  readonly Instance: new (module: object) => { readonly exports: unknown }
}

const { Module, Instance } = (globalThis as unknown as { readonly WebAssembly: WebAssemblyApi }).WebAssembly
const wasm = new Instance(new Module(assemble())).exports as PolyExports
let view = new DataView(wasm.memory.buffer)
let bytes = new Uint8Array(wasm.memory.buffer)

function ensureCapacity(messageLength: number): void {
  const needed = MESSAGE + messageLength + 16
  if (needed <= bytes.length) return
  wasm.memory.grow(Math.ceil((needed - bytes.length) / 65536))
  view = new DataView(wasm.memory.buffer)
  bytes = new Uint8Array(wasm.memory.buffer)
}

const HIBIT = 1n << 24n

/** Computes the 16-byte Poly1305 tag of `message` under a one-time 32-byte `key`. */
export function poly1305(message: Uint8Array, key: Uint8Array): Uint8Array {
  if (key.length !== 32) throw new Error("Poly1305 needs a 32-byte key")
  ensureCapacity(message.length)
  const k = (offset: number) => key[offset] | (key[offset + 1] << 8) | (key[offset + 2] << 16) | (key[offset + 3] << 24)
  // Clamped r in 26-bit limbs (RFC 8439 §2.5.1).
  const r = [
    k(0) & 0x3ffffff,
    (k(3) >>> 2) & 0x3ffff03,
    (k(6) >>> 4) & 0x3ffc0ff,
    (k(9) >>> 6) & 0x3f03fff,
    (k(12) >>> 8) & 0x00fffff
  ]
  for (let i = 0; i < 5; i++) {
    view.setUint32(STATE_R + 8 * i, r[i], true)
    view.setUint32(STATE_R + 8 * i + 4, 0, true)
    view.setUint32(STATE_H + 8 * i, 0, true)
    view.setUint32(STATE_H + 8 * i + 4, 0, true)
    if (i > 0) {
      view.setUint32(STATE_S + 8 * (i - 1), r[i] * 5, true)
      view.setUint32(STATE_S + 8 * (i - 1) + 4, 0, true)
    }
  }
  bytes.set(message, MESSAGE)
  const full = message.length & ~15
  wasm.blocks(MESSAGE, full, HIBIT)
  const rest = message.length - full
  if (rest > 0) {
    // The last partial block carries its own 1 bit right after the data, and no hibit.
    bytes[MESSAGE + message.length] = 1
    bytes.fill(0, MESSAGE + message.length + 1, MESSAGE + full + 16)
    wasm.blocks(MESSAGE + full, 16, 0n)
  }
  return finish(key)
}

/** Full reduction mod 2^130 - 5, then (h + s) mod 2^128, without data-dependent branches. */
function finish(key: Uint8Array): Uint8Array {
  let h0 = view.getUint32(STATE_H, true)
  let h1 = view.getUint32(STATE_H + 8, true)
  let h2 = view.getUint32(STATE_H + 16, true)
  let h3 = view.getUint32(STATE_H + 24, true)
  let h4 = view.getUint32(STATE_H + 32, true)
  let c = h1 >>> 26
  h1 &= MASK26
  h2 += c
  c = h2 >>> 26
  h2 &= MASK26
  h3 += c
  c = h3 >>> 26
  h3 &= MASK26
  h4 += c
  c = h4 >>> 26
  h4 &= MASK26
  h0 += c * 5
  c = h0 >>> 26
  h0 &= MASK26
  h1 += c
  // g = h + 5 - 2^130; keep g when it did not go negative.
  let g0 = h0 + 5
  c = g0 >>> 26
  g0 &= MASK26
  let g1 = h1 + c
  c = g1 >>> 26
  g1 &= MASK26
  let g2 = h2 + c
  c = g2 >>> 26
  g2 &= MASK26
  let g3 = h3 + c
  c = g3 >>> 26
  g3 &= MASK26
  const g4 = (h4 + c - (1 << 26)) | 0
  const keepG = (g4 >>> 31) - 1
  const keepH = ~keepG
  h0 = (h0 & keepH) | (g0 & keepG)
  h1 = (h1 & keepH) | (g1 & keepG)
  h2 = (h2 & keepH) | (g2 & keepG)
  h3 = (h3 & keepH) | (g3 & keepG)
  h4 = (h4 & keepH) | (g4 & keepG)
  const words = [
    (h0 | (h1 << 26)) >>> 0,
    ((h1 >>> 6) | (h2 << 20)) >>> 0,
    ((h2 >>> 12) | (h3 << 14)) >>> 0,
    ((h3 >>> 18) | (h4 << 8)) >>> 0
  ]
  const tag = new Uint8Array(16)
  const out = new DataView(tag.buffer)
  let carry = 0
  for (let i = 0; i < 4; i++) {
    const o = 16 + 4 * i
    const pad = (key[o] | (key[o + 1] << 8) | (key[o + 2] << 16) | (key[o + 3] << 24)) >>> 0
    const sum = words[i] + pad + carry
    out.setUint32(4 * i, sum >>> 0, true)
    carry = Math.floor(sum / 0x100000000)
  }
  return tag
}
