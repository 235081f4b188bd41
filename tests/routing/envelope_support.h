// The envelope parser's tests (tests/routing/envelope_*_test.cc): a reference JSON validator
// written independently of simdjson, realistic Partoo events (one per catalogue type), helpers
// that build events around a field or a payload, and the parser fixture.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "routing/envelope.h"

namespace fanout::routing {

// ---------------------------------------------------------------------------------------------
// A strict, deliberately simple reference validator (RFC 8259, UTF-8 checked, unpaired surrogate
// escapes refused as I-JSON does), written independently of simdjson so the two can be compared.
// ---------------------------------------------------------------------------------------------
class ReferenceJson {
 public:
  // True when `s` is one valid JSON value, optionally surrounded by whitespace.
  static bool valid(std::string_view s) {
    ReferenceJson r(s);
    r.skip_space();
    if (!r.value(0)) return false;
    r.skip_space();
    return r.pos_ == s.size();
  }

  // Nesting depth of the deepest container of a valid document (0 for a scalar).
  static std::size_t depth(std::string_view s) {
    std::size_t depth = 0, deepest = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (in_string) {
        if (c == '\\') ++i;
        if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        deepest = std::max(deepest, ++depth);
      } else if (c == '}' || c == ']') {
        --depth;
      }
    }
    return deepest;
  }

 private:
  explicit ReferenceJson(std::string_view s) : s_(s) {}

  [[nodiscard]] bool at_end() const { return pos_ >= s_.size(); }
  [[nodiscard]] unsigned char peek() const {
    return at_end() ? 0 : static_cast<unsigned char>(s_[pos_]);
  }
  bool eat(char c) {
    if (at_end() || s_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  void skip_space() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) {
      ++pos_;
    }
  }

  bool value(int depth) {
    if (depth > 512) return false;  // deeper than any test input; keeps the stack small
    switch (peek()) {
      case '{':
        return object(depth + 1);
      case '[':
        return array(depth + 1);
      case '"':
        return string();
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  bool object(int depth) {
    ++pos_;
    skip_space();
    if (eat('}')) return true;
    for (;;) {
      skip_space();
      if (peek() != '"' || !string()) return false;
      skip_space();
      if (!eat(':')) return false;
      skip_space();
      if (!value(depth)) return false;
      skip_space();
      if (eat('}')) return true;
      if (!eat(',')) return false;
    }
  }

  bool array(int depth) {
    ++pos_;
    skip_space();
    if (eat(']')) return true;
    for (;;) {
      skip_space();
      if (!value(depth)) return false;
      skip_space();
      if (eat(']')) return true;
      if (!eat(',')) return false;
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool digits() {
    const std::size_t start = pos_;
    while (peek() >= '0' && peek() <= '9') ++pos_;
    return pos_ > start;
  }

  bool number() {
    eat('-');
    if (eat('0')) {
    } else if (peek() >= '1' && peek() <= '9') {
      digits();
    } else {
      return false;
    }
    if (eat('.') && !digits()) return false;
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (!eat('+')) eat('-');
      if (!digits()) return false;
    }
    return true;
  }

  int hex4() {
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      const unsigned char c = peek();
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) return -1;
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  bool string() {
    ++pos_;
    for (;;) {
      if (at_end()) return false;
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        ++pos_;
        const unsigned char e = peek();
        ++pos_;
        if (e == 'u') {
          const int cp = hex4();
          if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!eat('\\') || !eat('u')) return false;
            const int low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) return false;
          }
        } else if (std::string_view("\"\\/bfnrt").find(static_cast<char>(e)) ==
                       std::string_view::npos ||
                   e == 0) {
          return false;
        }
        continue;
      }
      if (c < 0x80) {
        ++pos_;
        continue;
      }
      if (!utf8_sequence()) return false;
    }
  }

  // One multi-byte UTF-8 sequence: no overlong forms, no surrogates, nothing above U+10FFFF.
  bool utf8_sequence() {
    const unsigned char c = peek();
    int length = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    ++pos_;
    for (int i = 1; i < length; ++i) {
      const unsigned char k = peek();
      if ((k & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (k & 0x3Fu);
      ++pos_;
    }
    if (length == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return false;
    if (length == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return false;
    return true;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Realistic Partoo events, one per catalogue type.
// ---------------------------------------------------------------------------------------------
struct Sample {
  std::string_view type;
  std::int64_t org_id;
  std::string_view id;
  std::string_view payload;
};

inline constexpr std::string_view kBusinessPayload =
    R"({"business":{"id":"5f2a4d3c8e1b9a0012c3d4e5","org_id":1042,"name":"Boulangerie Lef\u00e8vre","code":"BL-PARIS-11","status":"open",)"
    R"("address_full":"12 Rue Oberkampf","address2":"B\u00e2timent B","city":"Paris","zipcode":"75011","region":"\u00cele-de-France","country":"FR",)"
    R"("lat":48.86472,"long":2.37112,"categories":["gcid:bakery","gcid:pastry_shop"],)"
    R"("contacts":[{"name":"","email":"contact@boulangerie-lefevre.fr","phone_numbers":["+33143570000"],"fax":""}],)"
    R"("open_hours":{"monday":[],"tuesday":["07:00-13:30","15:30-20:00"],"wednesday":["07:00-13:30","15:30-20:00"],)"
    R"("thursday":["07:00-13:30","15:30-20:00"],"friday":["07:00-20:00"],"saturday":["07:30-20:00"],"sunday":["07:30-13:00"]},)"
    R"("specific_hours":{"open":[],"close":[{"starts_at":"2024-12-25","ends_at":"2024-12-26"}]},)"
    R"("description_short":"Pain au levain \"maison\" depuis 1987","website_url":"https://boulangerie-lefevre.fr/",)"
    R"("facebook_url":null,"twitter_url":null,"google_location_id":"accounts/112233/locations/445566","is_closed":false,)"
    R"("created":1701094244.929678,"modified":1732724044.929678}})";

inline constexpr std::string_view kBusinessDeletedPayload =
    R"({"business":{"id":"5f2a4d3c8e1b9a0012c3d4e5","org_id":1042,"name":"Boulangerie Lef\u00e8vre","deleted_at":"2024-11-27T16:10:44.929678Z","reason":"closed permanently"}})";

inline constexpr std::string_view kMessagePayload =
    R"({"conversation":{"id":88123,"business_id":"5f2a4d3c8e1b9a0012c3d4e5","channel":"google_business_messages","status":"open",)"
    R"("consumer":{"first_name":"Ana\u00efs","last_name":"D\u00fcrr","img":"https://lh3.googleusercontent.com/a/ACg8ocK"}},)"
    R"("message":{"id":55012893,"sender_type":"Consumer","sender_label":"Ana\u00efs D\u00fcrr",)"
    R"("content":"Bonjour 👋 Avez-vous encore des \"galettes des rois\" ? Merci ! \ud83e\udd50 日本語\nÀ bientôt",)"
    R"("content_type":"TEXT","date":"2024-11-27T16:10:44.929678Z","is_deleted":false,"reactions":[{"emoji":"❤️","by":"business"}]}})";

inline constexpr std::string_view kLeadPayload =
    R"({"lead":{"id":"c0a8012e-7f3b-4d8e-9a61-2b5e3f1d9c44","business_id":"5f2a4d3c8e1b9a0012c3d4e5","source":"google_lead_form",)"
    R"("contact":{"name":"Jean-Fran\u00e7ois M\u00fcller","email":"jf.muller+devis@example.org","phone":"+33 6 12 34 56 78"},)"
    R"("message":"Bonjour,\r\nJe souhaite un devis pour 40 \"viennoiseries\" le 14/02.\r\nCordialement","consent":{"marketing":false,"terms":true},)"
    R"("utm":{"campaign":"noel_2024","medium":"cpc"},"score":0.87,"received_at":"2024-11-27T16:10:44.929678Z"}})";

inline const std::array<Sample, 6> kSamples = {{
    {"business_created", 1042, "evt_01HF8Z3K9Q2W4E6R8T0Y1U3I5O", kBusinessPayload},
    {"business_updated", 1042, "evt_01HF8Z3K9Q2W4E6R8T0Y1U3I5P", kBusinessPayload},
    {"business_deleted", 9223372036854775807, "evt_01HF8Z3K9Q2W4E6R8T0Y1U3I5Q",
     kBusinessDeletedPayload},
    {"message_created", 77, "msg-55012893-created", kMessagePayload},
    {"message_updated", 77, "msg-55012893-updated@2024-11-27T16:11:02Z", kMessagePayload},
    {"lead_received", 1, "lead:c0a8012e-7f3b-4d8e-9a61-2b5e3f1d9c44", kLeadPayload},
}};

inline std::string event_json(const Sample& s) {
  return R"({"id":")" + std::string(s.id) + R"(","org_id":)" + std::to_string(s.org_id) +
         R"(,"type":")" + std::string(s.type) + R"(","payload":)" + std::string(s.payload) + "}";
}

inline std::string expected_body(std::string_view type, std::string_view payload) {
  return R"({"type":")" + std::string(type) + R"(","payload":)" + std::string(payload) + "}";
}

// An event with org_id 1, type business_created and the given payload text.
inline std::string with_payload(std::string_view payload) {
  return R"({"org_id":1,"type":"business_created","payload":)" + std::string(payload) + "}";
}

// An event whose fields come first, then a valid org_id, type and payload.
inline std::string with_fields(std::string_view fields) {
  return "{" + std::string(fields) + R"(,"org_id":1,"type":"business_created","payload":{}})";
}

class EnvelopeParserTest : public ::testing::Test {
 protected:
  tl::expected<Envelope, EnvelopeError> parse(std::string_view json) { return parser_.parse(json); }

  EnvelopeError error_of(std::string_view json) {
    const auto result = parser_.parse(json);
    EXPECT_FALSE(result.has_value()) << "accepted: " << json;
    return result ? EnvelopeError::kInvalidJson : result.error();
  }

  EventCatalogue catalogue_;
  EnvelopeParser parser_{catalogue_};
};

}  // namespace fanout::routing
