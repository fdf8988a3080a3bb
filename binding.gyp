# Builds the project's own native addons (`npm ci` runs `node-gyp rebuild` through the package's
# "install" script):
#   build/Release/lwt_tun.node  the Linux TUN binding (native/tun.cc)
#   build/Release/lwt_udp.node  batched UDP sockets and batched AEAD for the UDP data path
#                               (native/udp.cc, aead.cc, datagrams.cc), against the OpenSSL that
#                               Node links and exports to addons (its headers ship with Node's).
{
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": [
      "NAPI_VERSION=8",
      "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS",
      "NODE_ADDON_API_DISABLE_DEPRECATED"
    ],
    "cflags!": ["-fexceptions"],
    "cflags_cc!": ["-fexceptions", "-std=gnu++14", "-std=gnu++17"],
    "cflags": ["-Wall", "-Wextra", "-O2", "-fno-exceptions"],
    "cflags_cc": ["-std=c++17", "-fno-exceptions", "-fno-rtti"],
    "conditions": [
      ["OS!='linux'", { "type": "none" }]
    ]
  },
  "targets": [
    {
      "target_name": "lwt_tun",
      "sources": ["native/tun.cc"]
    },
    {
      "target_name": "lwt_udp",
      "sources": ["native/udp.cc", "native/aead.cc", "native/datagrams.cc"]
    }
  ]
}
