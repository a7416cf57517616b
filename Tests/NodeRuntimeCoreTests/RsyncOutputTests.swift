import Testing

@testable import NodeRuntimeCore

@Suite("What rsync says while it runs")
struct RsyncOutputTests {
    @Test("progress lines give the live bytes and files and are not logged; items, deletions and unsafe symlinks are counted; --stats win when printed")
    func lines() {
        var output = RsyncOutput()
        #expect(output.read(">f+++++++++ 3000000 x") == .text)
        #expect(output.read("         32,768   1%    0.00kB/s    0:00:00") == .progress)
        #expect(output.liveBytes == 32768 && output.liveFiles == 0)
        #expect(output.read("      3,000,000  99%    2.16MB/s    0:00:01 (xfr#1, to-chk=1/3)") == .progress)
        #expect(output.read("*deleting   old/file.rpm") == .text)
        #expect(output.read("ignoring unsafe symlink \"a/bad\" -> \"/etc/passwd\"") == .text)
        #expect(output.liveBytes == 3_000_000 && output.liveFiles == 1 && output.deletions == 1 && output.unsafeLinks == 1)
        // No --stats (the stage failed or was stopped): what the progress counted.
        #expect(output.result.bytesReceived == 3_000_000 && output.result.filesTransferred == 1 && output.result.filesDeleted == 1)
        // A number that is not progress (a file named like one) stays text.
        #expect(output.read("cd+++++++++ 4096 100%/") == .text && output.liveBytes == 3_000_000)
        for line in ["Number of files: 3 (reg: 2, dir: 1)", "Number of regular files transferred: 2", "Total file size: 3,000,100 bytes", "Total bytes received: 3,000,412"] {
            #expect(output.read(line[...]) == .text)
        }
        #expect(output.sawStats && output.result.bytesReceived == 3_000_412 && output.result.filesTransferred == 2 && output.result.totalFileSize == 3_000_100)
    }
}
