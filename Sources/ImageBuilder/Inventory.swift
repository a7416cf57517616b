import ArgumentParser
import Foundation

/// `mm-image inventory`: which drive went where, from the records `mm-image flash` appends.
struct Inventory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the flashing records: node, drive serial and model, image version, result, time.")

    @Option(help: "The inventory `mm-image flash` appended to.") var file = "inventory.jsonl"
    @Argument(help: "Only the records of this node (or of a drive with this serial).") var filter: String?
    @Flag(help: "Print the records as they are (JSON lines).") var json = false

    func run() async throws {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ValidationError("\(file): no inventory there (mm-image flash --inventory writes one)")
        }
        var rows: [[String]] = [["time", "node", "serial", "model", "image", "result"]]
        for (number, line) in text.split(separator: "\n").enumerated() {
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                FileHandle.standardError.write(Data("mm-image: \(file):\(number + 1): not a record; skipped\n".utf8))
                continue
            }
            func field(_ key: String) -> String { record[key].map { "\($0)" } ?? "" }
            if let filter, field("node") != filter, field("serial") != filter { continue }
            if json {
                print(line)
                continue
            }
            let result = field("result")
            rows.append([field("time"), field("node"), field("serial"), field("model"), "\(field("version")) build \(field("build"))", result.count > 60 ? String(result.prefix(57)) + "..." : result])
        }
        guard !json else { return }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
    }
}
