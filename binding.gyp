{
  "targets": [
    {
      "target_name": "effect_ssh_crypto",
      "sources": ["native/effect_ssh_crypto.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
