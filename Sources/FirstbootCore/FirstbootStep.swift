import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// What mm-firstboot does every boot, in order. Each step can be switched off for tests.
public enum FirstbootStep: String, CaseIterable, Sendable {
    case network, hostname, firewall, ssh, identity, disk, console
}
