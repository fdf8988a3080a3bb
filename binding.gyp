# Builds build/Release/lwt_tun.node, the project's own Linux TUN binding (see native/tun.cc).
# `npm ci` runs `node-gyp rebuild` through the package's "install" script.
{
  "targets": [
    {
      "target_name": "lwt_tun",
      "sources": ["native/tun.cc"],
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
    }
  ]
}
