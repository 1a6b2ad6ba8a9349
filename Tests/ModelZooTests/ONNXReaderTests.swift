import XCTest
@testable import ModelZoo

final class ONNXReaderTests: XCTestCase {}
