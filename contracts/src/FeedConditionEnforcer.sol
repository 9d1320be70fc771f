// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// The part of Chainlink's AggregatorV3Interface the enforcer reads.
interface IPriceFeed {
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}

/// A caveat enforcer of the MetaMask Delegation Framework (it has the
/// ICaveatEnforcer hooks) that lets a delegation be redeemed only while a
/// price feed shows a condition: the feed's latest answer is below (or
/// above) a threshold, is positive, and was updated no more than maxAge
/// seconds before the block. A trigger's own grant carries it, so the
/// chain, not the node, decides whether the price crossed.
///
/// Terms: abi.encode(address feed, bool above, int256 threshold, uint256
/// maxAge), 128 bytes; threshold in the feed's own decimals.
contract FeedConditionEnforcer {
    function getTermsInfo(bytes calldata terms)
        public
        pure
        returns (address feed, bool above, int256 threshold, uint256 maxAge)
    {
        require(terms.length == 128, "FeedConditionEnforcer:invalid-terms-length");
        return abi.decode(terms, (address, bool, int256, uint256));
    }

    /// Reverts unless the feed shows the condition now.
    function check(bytes calldata terms) public view {
        (address feed, bool above, int256 threshold, uint256 maxAge) = getTermsInfo(terms);
        (, int256 answer,, uint256 updatedAt,) = IPriceFeed(feed).latestRoundData();
        require(answer > 0, "FeedConditionEnforcer:invalid-answer");
        require(updatedAt <= block.timestamp && block.timestamp - updatedAt <= maxAge, "FeedConditionEnforcer:stale-answer");
        require(above ? answer > threshold : answer < threshold, "FeedConditionEnforcer:condition-not-met");
    }

    function beforeAllHook(bytes calldata, bytes calldata, bytes32, bytes calldata, bytes32, address, address) external {}

    function beforeHook(bytes calldata terms, bytes calldata, bytes32, bytes calldata, bytes32, address, address)
        external
        view
    {
        check(terms);
    }

    function afterHook(bytes calldata, bytes calldata, bytes32, bytes calldata, bytes32, address, address) external {}

    function afterAllHook(bytes calldata, bytes calldata, bytes32, bytes calldata, bytes32, address, address) external {}
}
