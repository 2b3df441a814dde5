import * as net from "node:net"
import * as Effect from "effect/Effect"
import { Driver } from "../internal/driver.js"
import type { KexInit } from "../protocol/kex/kexinit.js"
import { fingerprint, keyTypeOfAlgorithm, parsePublicKeyBlob } from "../protocol/keys/publicKey.js"
import { DEFAULTS, SUPPORTED } from "../protocol/transport/algorithms.js"
import type { AlgorithmLists } from "../protocol/transport/transport.js"
import { VERSION } from "../SshClient.js"
import { parseConnectionArgs, UsageError } from "./options.js"

export const probeUsage = "effect-ssh probe [-p PORT] host"

interface Observation {
  identification?: string
  kexInit?: KexInit | undefined
  hostKey?: { algorithm: string; key: Uint8Array }
  methods?: ReadonlyArray<string>
  error?: string
}

/**
 * One handshake with the given host key algorithms: records the server's identification,
 * KEXINIT and host key, and (when `askMethods`) the methods a "none" request is refused with.
 */
function handshake(host: string, port: number, hostKey: ReadonlyArray<string>, askMethods: boolean): Promise<Observation> {
  return new Promise((resolve) => {
    const seen: Observation = {}
    const socket = net.connect({ host, port })
    const timer = setTimeout(() => finish("timed out"), 15_000)
    const finish = (error?: string) => {
      clearTimeout(timer)
      if (error && !seen.error) seen.error = error
      socket.destroy()
      resolve(seen)
    }
    socket.once("error", (e) => finish(e.message))
    const algorithms: AlgorithmLists = { ...DEFAULTS, kex: SUPPORTED.kex, cipher: SUPPORTED.cipher, mac: SUPPORTED.mac, hostKey }
    const driver = new Driver(socket, { role: "client", software: `effect_ssh_${VERSION}`, algorithms }, {
      onEvent: (event, d) => {
        switch (event._tag) {
          case "Identification":
            seen.identification = event.version
            return
          case "HostKey":
            seen.kexInit = d.endpoint.transport.peerKexInit
            seen.hostKey = { algorithm: event.algorithm, key: event.key }
            if (!askMethods) return finish()
            return void d.run((e) => e.transport.acceptHostKey(true))
          case "Auth":
            if (event.event._tag === "ServiceAccepted") d.run((e) => e.clientAuth.none("probe"))
            else if (event.event._tag === "Failure") {
              seen.methods = event.event.methods
              finish()
            } else if (event.event._tag === "Success") {
              seen.methods = ["none"]
              finish()
            }
            return
          case "Closed":
            seen.kexInit ??= d.endpoint.transport.peerKexInit
            return finish(event.error?.message ?? "closed")
        }
      }
    })
    void driver
  })
}

/**
 * `effect-ssh probe`: the server's identification, algorithm lists, host keys with SHA256
 * fingerprints (formatted as `ssh-keygen -l` prints them) and the auth methods it offers.
 */
export function probe(argv: ReadonlyArray<string>): Effect.Effect<number, unknown> {
  return Effect.promise(async () => {
    const args = parseConnectionArgs(argv)
    if (args.rest.length > 0) throw new UsageError(`unexpected ${args.rest.join(" ")}`)
    const first = await handshake(args.host, args.port, SUPPORTED.hostKey, true)
    if (!first.identification || !first.kexInit) {
      process.stderr.write(`effect-ssh: cannot probe ${args.host}:${args.port}: ${first.error ?? "no answer"}\n`)
      return 255
    }
    const k = first.kexInit
    const out: string[] = [
      `identification: ${first.identification}`,
      `kex: ${k.kex.join(",")}`,
      `host key algorithms: ${k.hostKey.join(",")}`,
      `ciphers client->server: ${k.cipherC2S.join(",")}`,
      `ciphers server->client: ${k.cipherS2C.join(",")}`,
      `MACs client->server: ${k.macC2S.join(",")}`,
      `MACs server->client: ${k.macS2C.join(",")}`,
      `compression: ${k.compressionC2S.join(",")}`,
      "host keys:"
    ]
    // one handshake per key type the server offers and we can read (rsa-sha2-* share one key)
    const byType = new Map<string, string>()
    for (const alg of k.hostKey) {
      if (!SUPPORTED.hostKey.includes(alg)) continue
      const type = keyTypeOfAlgorithm(alg)
      if (!byType.has(type)) byType.set(type, alg)
    }
    for (const alg of byType.values()) {
      const seen = first.hostKey?.algorithm === alg ? first : await handshake(args.host, args.port, [alg], false)
      if (!seen.hostKey) {
        out.push(`  ${alg}: ${seen.error ?? "not offered"}`)
        continue
      }
      const key = parsePublicKeyBlob(seen.hostKey.key)
      out.push(`  ${key.bits} ${fingerprint(seen.hostKey.key)} ${args.host} (${keyLabel(key.type)})`)
    }
    out.push(`auth methods: ${first.methods?.join(",") ?? `unknown (${first.error ?? "no answer"})`}`)
    process.stdout.write(`${out.join("\n")}\n`)
    return 0
  })
}

/** The label ssh-keygen -l prints in parentheses. */
function keyLabel(type: string): string {
  if (type === "ssh-ed25519") return "ED25519"
  if (type === "ssh-rsa") return "RSA"
  if (type === "ssh-dss") return "DSA"
  if (type.startsWith("ecdsa-")) return "ECDSA"
  if (type.startsWith("sk-ecdsa")) return "ECDSA-SK"
  if (type.startsWith("sk-ssh-ed25519")) return "ED25519-SK"
  return type
}
