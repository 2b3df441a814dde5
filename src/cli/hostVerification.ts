import { appendFileSync, existsSync, mkdirSync, readFileSync } from "node:fs"
import { dirname } from "node:path"
import * as readline from "node:readline/promises"
import * as Effect from "effect/Effect"
import { checkKnownHost, knownHostsLine, parseKnownHosts } from "../protocol/keys/knownHosts.js"
import { parsePublicKeyBlob } from "../protocol/keys/publicKey.js"
import type { HostKeyInfo, HostVerifier } from "../SshClient.js"

export interface KnownHostsPolicy {
  readonly file: string
  /** OpenSSH's StrictHostKeyChecking: yes, accept-new, no (or off), ask. */
  readonly strict: string
  /** Whether "ask" may prompt on the terminal. */
  readonly interactive: boolean
}

/**
 * Verifies host keys against a known_hosts file with OpenSSH's policies. A changed key is
 * always refused, loudly, naming the file and line; an unknown one is refused (yes),
 * added (accept-new, no), or asked about (ask, on a terminal).
 */
export function knownHostsVerifier(policy: KnownHostsPolicy): HostVerifier {
  return (info: HostKeyInfo) =>
    Effect.promise(async () => {
      const text = existsSync(policy.file) ? readFileSync(policy.file, "utf8") : ""
      const keyType = parsePublicKeyBlob(info.key).type
      const verdict = checkKnownHost(parseKnownHosts(text), info.host, info.port, keyType, info.key)
      switch (verdict._tag) {
        case "Match":
          return true
        case "Revoked":
          process.stderr.write(`The ${keyType} host key for ${info.host} is marked as revoked (${policy.file}:${verdict.entry.line}).\n`)
          return false
        case "Mismatch":
          process.stderr.write(
            `@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n` +
              `The ${keyType} key of ${info.host} is now ${info.fingerprint}; ` +
              `${policy.file}:${verdict.entries.map((e) => e.line).join(",")} has another. Someone could be eavesdropping on you.\n`
          )
          return false
      }
      const add = () => {
        if (policy.file === "/dev/null") return
        mkdirSync(dirname(policy.file), { recursive: true, mode: 0o700 })
        appendFileSync(policy.file, `${knownHostsLine(info.host, info.port, keyType, info.key)}\n`, { mode: 0o600 })
        process.stderr.write(`Warning: permanently added ${info.host} (${keyType}) to ${policy.file}.\n`)
      }
      switch (policy.strict) {
        case "no":
        case "off":
        case "accept-new":
          add()
          return true
        case "ask":
          if (policy.interactive && (await ask(info, keyType))) {
            add()
            return true
          }
          break
      }
      process.stderr.write(
        `No ${keyType} host key is known for ${info.host} (fingerprint ${info.fingerprint}) in ${policy.file}; ` +
          `refusing (StrictHostKeyChecking=${policy.strict}). Use -o StrictHostKeyChecking=accept-new to trust it on first use.\n`
      )
      return false
    })
}

async function ask(info: HostKeyInfo, keyType: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr })
  try {
    const answer = await rl.question(
      `The authenticity of host '${info.host}' can't be established.\n${keyType} key fingerprint is ${info.fingerprint}.\n` +
        `Are you sure you want to continue connecting (yes/no)? `
    )
    return answer.trim().toLowerCase() === "yes"
  } finally {
    rl.close()
  }
}
