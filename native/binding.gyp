{
  "targets": [
    {
      "target_name": "byol_native",
      "sources": ["src/addon.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node -p \"process.env.BYOL_DNNL_INCLUDE || ''\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O3", "-std=c++17", "-fopenmp", "-fno-trapping-math"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": [
        "<!@(node -p \"process.env.BYOL_DNNL_LIB ? '-L' + process.env.BYOL_DNNL_LIB + ' -Wl,-rpath,' + process.env.BYOL_DNNL_LIB : ''\")",
        "-ldnnl"
      ],
      "conditions": [
        ["OS=='linux'", { "libraries": ["-lgomp"] }],
        ["OS=='mac'", {
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "MACOSX_DEPLOYMENT_TARGET": "11.0",
            "OTHER_CPLUSPLUSFLAGS": ["-O3", "-Xpreprocessor", "-fopenmp", "-fno-trapping-math", "<!@(node -p \"require('fs').existsSync('/opt/homebrew/opt/libomp/include') ? '-I/opt/homebrew/opt/libomp/include' : '-I/usr/local/opt/libomp/include'\")"],
            "OTHER_LDFLAGS": ["<!@(node -p \"require('fs').existsSync('/opt/homebrew/opt/libomp/lib') ? '-L/opt/homebrew/opt/libomp/lib' : '-L/usr/local/opt/libomp/lib'\")", "-lomp"]
          }
        }]
      ]
    }
  ]
}
