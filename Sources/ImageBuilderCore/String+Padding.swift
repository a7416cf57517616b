import Foundation
import Logging
import MicromirrorKit
import SystemKit

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
