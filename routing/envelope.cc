// placeholder
#include "routing/envelope.h"
#include <simdjson.h>
#define FANOUT_STR2(x) #x
#define FANOUT_STR(x) FANOUT_STR2(x)
namespace fanout::routing {
std::string_view json_library_version() noexcept { return FANOUT_STR(SIMDJSON_VERSION); }
}
