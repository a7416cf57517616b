import NodeRuntimeCore
import MicromirrorTestSupport
import Testing

@Suite("Content types and caching rules")
struct ContentTypeTests {
    @Test("payloads are octet-stream; text, HTML, XML and JSON are what they are", arguments: [
        ("foo-1.0-1.x86_64.rpm", "application/octet-stream"), ("hello_1.0_amd64.deb", "application/octet-stream"),
        ("ubuntu-24.04-desktop-amd64.iso", "application/octet-stream"), ("disk.img", "application/octet-stream"),
        ("linux-6.1-1-x86_64.pkg.tar.zst", "application/octet-stream"), ("glibc-2.38-1-x86_64.pkg.tar.xz", "application/octet-stream"),
        ("index.html", "text/html; charset=utf-8"), ("repomd.xml", "application/xml"), ("status.json", "application/json"),
        ("README.txt", "text/plain; charset=utf-8"), ("Release", "text/plain; charset=utf-8"), ("SHA256SUMS", "text/plain; charset=utf-8"),
        ("primary.xml.gz", "application/gzip"), ("Packages.xz", "application/x-xz"),
    ])
    func types(name: String, type: String) {
        #expect(MirrorContentType.type(for: name) == type)
    }

    @Test("repository metadata must be revalidated", arguments: [
        ["fedora", "repodata", "repomd.xml"], ["fedora", "repodata", "abc-primary.sqlite.bz2"], ["epel", "x", "comps.xml.zst"],
        ["ubuntu", "dists", "noble", "Release"], ["ubuntu", "dists", "noble", "InRelease"], ["ubuntu", "dists", "noble", "Release.gpg"],
        ["ubuntu", "dists", "noble", "main", "binary-amd64", "Packages.xz"], ["debian", "dists", "x", "main", "source", "Sources.gz"],
        ["archlinux", "core", "os", "x86_64", "core.db"], ["archlinux", "core", "os", "x86_64", "core.db.sig"],
        ["archlinux", "core", "os", "x86_64", "core.files.tar.gz"], ["almalinux", "9", "BaseOS", "x86_64", "os", "repodata", "x.xml.gz.asc"],
    ])
    func metadata(path: [String]) {
        #expect(MirrorContentType.cacheControl(for: path) == "max-age=60, must-revalidate")
    }

    @Test("payloads are cached for a day", arguments: [
        ["fedora", "Packages", "f", "foo-1.0.rpm"], ["ubuntu", "pool", "main", "h", "hello", "hello_1.0_amd64.deb"],
        ["archlinux", "core", "os", "x86_64", "linux-6.1-1-x86_64.pkg.tar.zst"], ["ubuntu-releases", "24.04", "ubuntu-24.04.iso"],
    ])
    func payloads(path: [String]) {
        #expect(MirrorContentType.cacheControl(for: path) == "public, max-age=86400")
    }
}
