/**
 * The optional native ciphers (`native/effect_ssh_crypto.c`, built by `npm install` through
 * node-gyp): AES-GCM and chacha20-poly1305@openssh.com on the OpenSSL that Node.js links, one
 * context per direction and packets sealed in place. When the addon is not built, or
 * `EFFECT_SSH_NATIVE=0` is set, `nativeCiphers` is undefined and node:crypto serves instead;
 * both produce the same bytes.
 */
import { createRequire } from "node:module"

/** An OpenSSL context held by the addon. */
export type NativeContext = { readonly __nativeContext: unique symbol }

/** A direction's context together with the addon that serves it. */
export interface NativeHandle {
  readonly ciphers: NativeCiphers
  readonly ctx: NativeContext
}

export interface NativeCiphers {
  gcmNew(key: Uint8Array, encrypt: boolean): NativeContext
  gcmSeal(ctx: NativeContext, nonce: Uint8Array, packet: Uint8Array, bodyEnd: number): boolean
  gcmSealAround(ctx: NativeContext, nonce: Uint8Array, prefix: Uint8Array, data: Uint8Array, sealed: Uint8Array, suffix: Uint8Array): boolean
  gcmOpen(ctx: NativeContext, nonce: Uint8Array, packet: Uint8Array, bodyEnd: number, plain: Uint8Array): boolean
  chachaNew(key: Uint8Array): NativeContext
  chachaCryptLength(ctx: NativeContext, sequence: number, field: Uint8Array): boolean
  chachaSeal(ctx: NativeContext, sequence: number, packet: Uint8Array, bodyEnd: number): boolean
  chachaOpen(ctx: NativeContext, sequence: number, packet: Uint8Array, bodyEnd: number, plain: Uint8Array): boolean
}

function load(): NativeCiphers | undefined {
  if (process.env.EFFECT_SSH_NATIVE === "0") return undefined
  try {
    // This file sits three folders below the package root, in src/ and in dist/ alike.
    return createRequire(import.meta.url)("../../../build/Release/effect_ssh_crypto.node") as NativeCiphers
  } catch {
    return undefined
  }
}

export const nativeCiphers: NativeCiphers | undefined = load()

/**
 * Packets from this many body bytes on take the addon; smaller ones (handshake, keepalives,
 * keystrokes) take node:crypto. A context (~2 KiB of OpenSSL memory) is made at the first large
 * packet, so a connection that never moves bulk data never holds one.
 */
export const NATIVE_FROM = 4096
