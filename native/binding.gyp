{
  "targets": [
    {
      "target_name": "probescope_bpf",
      "sources": ["src/addon.cc", "src/errors.cc", "src/kernel_btf.cc", "src/object.cc", "src/rodata.cc", "src/links.cc", "src/ringbuf.cc", "src/sched.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
