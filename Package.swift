// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "micromirror",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mm-image", targets: ["ImageBuilder"]),
        .executable(name: "mm-firstboot", targets: ["Firstboot"]),
        .executable(name: "mm-node", targets: ["NodeRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.20.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
    ],
    targets: [
        // One systemLibrary per C library: module.modulemap + shim.h only.
        .systemLibrary(name: "CParted", pkgConfig: "libparted", providers: [.apt(["libparted-dev"])]),
        .systemLibrary(name: "CBlkid", pkgConfig: "blkid", providers: [.apt(["libblkid-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        // Linux system calls without a glibc wrapper (openat2); header only.
        .systemLibrary(name: "CLinuxShims"),

        // Thin owners of C handles and external tools; no C type leaves this module.
        .target(
            name: "SystemKit",
            dependencies: [
                "CParted", "CBlkid", "CArchive", "COpenSSL", "CMosquitto", "CLinuxShims",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // What two or more programs share: manifests, GPT, bundles, block maps, YAML validation.
        .target(
            name: "MicromirrorKit",
            dependencies: [
                "SystemKit",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ImageBuilderCore",
            dependencies: [
                "SystemKit", "MicromirrorKit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ImageBuilder",
            dependencies: [
                "ImageBuilderCore", "MicromirrorKit", "SystemKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "FirstbootCore",
            dependencies: [
                "MicromirrorKit", "SystemKit",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "Firstboot",
            dependencies: [
                "FirstbootCore", "MicromirrorKit", "SystemKit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "NodeRuntimeCore",
            dependencies: [
                "MicromirrorKit", "SystemKit",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "NodeRuntime",
            dependencies: [
                "NodeRuntimeCore", "MicromirrorKit", "SystemKit",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Helpers every test target shares (running tools, scratch directories).
        .target(name: "MicromirrorTestSupport", path: "Tests/Support", swiftSettings: strict),
        .testTarget(name: "SystemKitTests", dependencies: ["SystemKit", "MicromirrorTestSupport"], swiftSettings: strict),
        .testTarget(name: "MicromirrorKitTests", dependencies: ["MicromirrorKit", "SystemKit", "MicromirrorTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "NodeRuntimeCoreTests",
            dependencies: [
                "NodeRuntimeCore", "MicromirrorKit", "MicromirrorTestSupport", "ImageBuilderCore", "SystemKit",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FirstbootCoreTests", dependencies: ["FirstbootCore", "MicromirrorKit", "SystemKit", "MicromirrorTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ImageBuilderCoreTests",
            dependencies: ["ImageBuilderCore", "MicromirrorKit", "SystemKit", "MicromirrorTestSupport"],
            swiftSettings: strict
        ),
    ]
)
